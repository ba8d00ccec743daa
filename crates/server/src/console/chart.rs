//! The status page's chart: replication lag and rows pending over the last
//! hour, from the server's samples, drawn as inline SVG (no script, nothing
//! from elsewhere; colors from the style sheet). Lag is read on the left
//! axis, pending rows on the right; a gap shaded grey is a time the site's
//! database did not answer.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use maud::{html, Markup};

use crate::replication::{Sample, WINDOW};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 64.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// A round number at least `value` (1, 2 or 5 times a power of ten), and at
/// least `floor`.
fn ceiling(value: f64, floor: f64) -> f64 {
    let v = value.max(floor);
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|c| *c >= v).unwrap_or(v)
}

/// A number for an axis: `12`, `1.5`, `0.2`.
fn tick(v: f64) -> String {
    if v >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The chart of `samples` (oldest first) up to `now`.
pub fn chart(samples: &[Sample], now: SystemTime) -> Markup {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let start = now.checked_sub(WINDOW).unwrap_or(SystemTime::UNIX_EPOCH);
    let x = |at: SystemTime| {
        let into = at.duration_since(start).unwrap_or(Duration::ZERO).as_secs_f64();
        LEFT + plot_w * (into / WINDOW.as_secs_f64()).min(1.0)
    };
    let max_lag = ceiling(samples.iter().filter_map(|s| s.lag).fold(0.0, f64::max), 1.0);
    let max_pending = ceiling(samples.iter().filter_map(|s| s.pending).max().unwrap_or(0) as f64, 10.0);
    let y = |v: f64, max: f64| TOP + plot_h * (1.0 - (v / max).min(1.0));
    // Lines broken where the database did not answer; shaded spans there.
    let mut lag_lines: Vec<String> = Vec::new();
    let mut pending_lines: Vec<String> = Vec::new();
    let mut down: Vec<(f64, f64)> = Vec::new();
    let (mut lag_now, mut pending_now) = (String::new(), String::new());
    for (i, s) in samples.iter().enumerate() {
        match (s.lag, s.pending) {
            (Some(lag), Some(pending)) => {
                let _ = write!(lag_now, "{:.1},{:.1} ", x(s.at), y(lag, max_lag));
                let _ = write!(pending_now, "{:.1},{:.1} ", x(s.at), y(pending as f64, max_pending));
            }
            _ => {
                lag_lines.push(std::mem::take(&mut lag_now));
                pending_lines.push(std::mem::take(&mut pending_now));
                let end = samples.get(i + 1).map_or(now, |next| next.at);
                match down.last_mut() {
                    Some((_, last_end)) if (*last_end - x(s.at)).abs() < 0.5 => *last_end = x(end),
                    _ => down.push((x(s.at), x(end))),
                }
            }
        }
    }
    lag_lines.push(lag_now);
    pending_lines.push(pending_now);
    lag_lines.retain(|l| !l.trim().is_empty());
    pending_lines.retain(|l| !l.trim().is_empty());
    let latest = samples.iter().rev().find(|s| s.lag.is_some());
    let summary = match latest {
        Some(s) => format!(
            "{} samples over the last hour; now lag {} s, {} rows pending; highest lag {} s.",
            samples.len(),
            tick(s.lag.unwrap_or(0.0)),
            s.pending.unwrap_or(0),
            tick(samples.iter().filter_map(|s| s.lag).fold(0.0, f64::max))
        ),
        None => "No sample yet: the server samples replication every few seconds.".to_string(),
    };
    let bottom = TOP + plot_h;
    html! {
        figure.chart {
            svg #chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="chart-caption"
                xmlns="http://www.w3.org/2000/svg" {
                @for (from, to) in &down {
                    rect.down x=(format!("{from:.1}")) y=(TOP) width=(format!("{:.1}", (to - from).max(1.0))) height=(plot_h) {}
                }
                @for frac in [0.0, 0.5, 1.0] {
                    line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", y(frac * max_lag, max_lag)))
                        y2=(format!("{:.1}", y(frac * max_lag, max_lag))) {}
                    text.axis.lag-axis x=(LEFT - 6.0) y=(format!("{:.1}", y(frac * max_lag, max_lag) + 4.0)) text-anchor="end" {
                        (tick(frac * max_lag)) " s"
                    }
                    text.axis.pending-axis x=(WIDTH - RIGHT + 6.0) y=(format!("{:.1}", y(frac * max_pending, max_pending) + 4.0)) {
                        (tick(frac * max_pending))
                    }
                }
                @for (label, minutes_ago) in [("60 min ago", 60.0), ("30 min ago", 30.0), ("now", 0.0)] {
                    text.axis x=(format!("{:.1}", LEFT + plot_w * (1.0 - minutes_ago / 60.0))) y=(bottom + 18.0) text-anchor="middle" {
                        (label)
                    }
                }
                @for points in &pending_lines { polyline.pending points=(points.trim()) {} }
                @for points in &lag_lines { polyline.lag points=(points.trim()) {} }
            }
            figcaption #chart-caption {
                span.key-lag { "━ lag (s, left)" } " " span.key-pending { "━ rows pending (right)" } " "
                span.key-down { "▮ database unreachable" } ". " (summary)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(ceiling(0.3, 1.0), 1.0);
        assert_eq!(ceiling(3.2, 1.0), 5.0);
        assert_eq!(ceiling(140.0, 10.0), 200.0);
        assert_eq!(tick(1.5), "1.5");
        assert_eq!(tick(20.0), "20");
    }

    #[test]
    fn an_outage_breaks_the_lines_and_is_shaded() {
        let now = SystemTime::now();
        let at = |mins: u64| now - Duration::from_secs(mins * 60);
        let up = |m, lag, pending| Sample { at: at(m), lag: Some(lag), pending: Some(pending) };
        let gone = |m| Sample { at: at(m), lag: None, pending: None };
        let samples = [up(50, 0.1, 0), up(40, 2.0, 30), gone(30), gone(20), up(10, 0.5, 5), up(0, 0.2, 1)];
        let svg = chart(&samples, now).into_string();
        assert_eq!(svg.matches("<polyline class=\"lag\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("<rect class=\"down\"").count(), 1, "{svg}");
        assert!(svg.contains("now lag 0.2 s, 1 rows pending; highest lag 2 s"), "{svg}");
        assert!(chart(&[], now).into_string().contains("No sample yet"));
    }
}
