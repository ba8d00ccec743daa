//! The format rows travel in between PostgreSQL servers — COPY's text or
//! binary format — and counting the rows of a COPY stream in either.

/// The format rows travel in, from a source's COPY OUT straight into the
/// targets' COPY IN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Binary,
}

impl CopyFormat {
    /// The option list a `COPY` statement takes for this format.
    pub(crate) fn options(self) -> &'static str {
        match self {
            CopyFormat::Text => "",
            CopyFormat::Binary => " (FORMAT binary)",
        }
    }
}

/// Counts the rows in the messages of a COPY OUT. The server sends one
/// message per row; in binary format the first also starts with the file
/// header, and the last is the trailer alone (a field count of -1), no row.
#[derive(Debug)]
pub(crate) struct RowCounter {
    format: CopyFormat,
    header_seen: bool,
    pub(crate) rows: u64,
}

/// The signature that opens a binary COPY; flags and the length of a header
/// extension follow it, four bytes each.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl RowCounter {
    pub(crate) fn new(format: CopyFormat) -> RowCounter {
        RowCounter { format, header_seen: false, rows: 0 }
    }

    pub(crate) fn saw(&mut self, message: &[u8]) {
        match self.format {
            CopyFormat::Text => self.rows += 1,
            CopyFormat::Binary => {
                let mut rest = message;
                if !self.header_seen {
                    self.header_seen = true;
                    if rest.starts_with(BINARY_SIGNATURE) && rest.len() >= BINARY_SIGNATURE.len() + 8 {
                        let at = BINARY_SIGNATURE.len() + 4;
                        let extension = u32::from_be_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
                        rest = rest.get(at + 4 + extension as usize..).unwrap_or_default();
                    }
                }
                if rest.len() >= 2 && rest[..2] != [0xff, 0xff] {
                    self.rows += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(extension: &[u8]) -> Vec<u8> {
        let mut h = BINARY_SIGNATURE.to_vec();
        h.extend_from_slice(&0u32.to_be_bytes());
        h.extend_from_slice(&(extension.len() as u32).to_be_bytes());
        h.extend_from_slice(extension);
        h
    }

    /// A binary row of one int4 field.
    fn row(v: i32) -> Vec<u8> {
        let mut r = 1u16.to_be_bytes().to_vec();
        r.extend_from_slice(&4u32.to_be_bytes());
        r.extend_from_slice(&v.to_be_bytes());
        r
    }

    const TRAILER: [u8; 2] = [0xff, 0xff];

    fn count(format: CopyFormat, messages: &[Vec<u8>]) -> u64 {
        let mut c = RowCounter::new(format);
        messages.iter().for_each(|m| c.saw(m));
        c.rows
    }

    #[test]
    fn rows_are_counted_in_either_format_whatever_the_header() {
        assert_eq!(count(CopyFormat::Text, &[b"1\ta\n".to_vec(), b"2\t\\N\n".to_vec()]), 2);
        // As PostgreSQL sends it: the header with the first row, the trailer alone.
        let first = [header(b""), row(1)].concat();
        assert_eq!(count(CopyFormat::Binary, &[first, row(2), row(-1), TRAILER.to_vec()]), 3);
        // No rows: header and trailer in one message.
        assert_eq!(count(CopyFormat::Binary, &[[header(b""), TRAILER.to_vec()].concat()]), 0);
        // A header extension is skipped, and a header sent on its own is no row.
        let first = [header(b"ext"), row(-1)].concat();
        assert_eq!(count(CopyFormat::Binary, &[first, TRAILER.to_vec()]), 1);
        assert_eq!(count(CopyFormat::Binary, &[header(b""), row(0xffff), TRAILER.to_vec()]), 1);
    }
}
