//! When the served TLS certificate expires, for
//! `dugong_tls_certificate_expiry_timestamp_seconds`: an alert can then warn
//! weeks ahead instead of clients failing on the day.
//!
//! Only the validity of the leaf certificate is needed, so this reads exactly
//! that from its DER encoding (RFC 5280 §4.1: `Certificate` → `tbsCertificate`
//! → `validity.notAfter`) rather than bringing in a whole X.509 parser.

/// `notAfter` of a DER-encoded X.509 certificate, in seconds since the Unix
/// epoch; `None` when the bytes are not a certificate this can read.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (certificate, _) = Tlv::read(der, SEQUENCE)?;
    let (tbs, _) = Tlv::read(certificate, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT is optional (absent means v1).
    if rest.first() == Some(&VERSION) {
        rest = Tlv::read(rest, VERSION)?.1;
    }
    rest = Tlv::read(rest, INTEGER)?.1; // serialNumber
    rest = Tlv::read(rest, SEQUENCE)?.1; // signature AlgorithmIdentifier
    rest = Tlv::read(rest, SEQUENCE)?.1; // issuer Name
    let (validity, _) = Tlv::read(rest, SEQUENCE)?;
    let (_, _, after_not_before) = Tlv::any(validity)?;
    let (tag, value, _) = Tlv::any(after_not_before)?;
    let text = std::str::from_utf8(value).ok()?;
    match tag {
        UTC_TIME => utc_time(text),
        GENERALIZED_TIME => generalized_time(text),
        _ => None,
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One DER tag-length-value.
struct Tlv;

impl Tlv {
    /// The value of the element at the start of `der`, which must have
    /// `tag`, and what follows it.
    fn read(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (found, value, rest) = Tlv::any(der)?;
        (found == tag).then_some((value, rest))
    }

    /// The tag and value of the element at the start of `der`, and what follows it.
    fn any(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = der.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            // Long form: the low bits say how many length bytes follow.
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
}

/// `YYMMDDHHMMSSZ`; RFC 5280: years 50–99 are 19xx, 00–49 are 20xx.
fn utc_time(text: &str) -> Option<i64> {
    let yy: i64 = digits(text, 0, 2)?;
    let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
    timestamp(year, &text[2..])
}

/// `YYYYMMDDHHMMSSZ`.
fn generalized_time(text: &str) -> Option<i64> {
    timestamp(digits(text, 0, 4)?, text.get(4..)?)
}

/// Seconds since the epoch of `year` and `MMDDHHMMSSZ`.
fn timestamp(year: i64, rest: &str) -> Option<i64> {
    if rest.len() != 11 || !rest.ends_with('Z') {
        return None;
    }
    let (month, day) = (digits(rest, 0, 2)?, digits(rest, 2, 4)?);
    let (hour, minute, second) = (digits(rest, 4, 6)?, digits(rest, 6, 8)?, digits(rest, 8, 10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(text: &str, from: usize, to: usize) -> Option<i64> {
    let part = text.get(from..to)?;
    part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(not_after: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["0.ha.test".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_not_after_in_both_time_encodings() {
        // 2031-05-17T00:00:00Z as `date -u -d 2031-05-17 +%s` says.
        assert_eq!(not_after(&certificate((2031, 5, 17))), Some(1_936_742_400));
        // From 2050 on, certificates carry GeneralizedTime.
        assert_eq!(not_after(&certificate((2051, 1, 1))), Some(2_556_144_000));
    }

    #[test]
    fn calendar_arithmetic() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(utc_time("491231235959Z"), Some(2_524_607_999));
        assert_eq!(utc_time("500101000000Z"), Some(-631_152_000));
        assert_eq!(generalized_time("20240229120000Z"), Some(1_709_208_000));
    }

    #[test]
    fn anything_else_is_none() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(b"-----BEGIN CERTIFICATE-----"), None);
        let der = certificate((2031, 5, 17));
        assert_eq!(not_after(&der[..der.len() / 2]), None, "cut short");
        assert_eq!(utc_time("3105170000Z"), None);
        assert_eq!(utc_time("311317000000Z"), None, "month 13");
        assert_eq!(generalized_time("2031051700000+0100"), None);
    }
}
