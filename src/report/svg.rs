//! SVG charts for report.html, drawn as text with no script: a linear or logarithmic value
//! axis, shaded bands (ramp, hold), lines, bars, reference lines (an SLO) and event markers.

use std::fmt::Write;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A round upper bound for a linear axis.
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A number as an axis label: short, no trailing noise.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{}G", trim(v / 1e9))
    } else if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 10_000.0 {
        format!("{}k", trim(v / 1e3))
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(v)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// Where values fall on an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// The low end.
    pub lo: f64,
    /// The high end.
    pub hi: f64,
    /// Logarithmic (base 10): latencies span decades, and p50 must not lie on the axis.
    pub log: bool,
}

impl Scale {
    /// From 0 to a round number above `max`.
    pub fn zero_to(max: f64) -> Scale {
        Scale { lo: 0.0, hi: nice_max(max), log: false }
    }

    /// From the decade at or below `min` to the decade at or above `max` (both above 0).
    pub fn decades(min: f64, max: f64) -> Scale {
        let min = if min > 0.0 && min.is_finite() { min } else { 0.1 };
        let max = if max.is_finite() { max.max(min) } else { min };
        let lo = 10f64.powf(min.log10().floor());
        let mut hi = 10f64.powf(max.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        Scale { lo, hi, log: true }
    }

    /// A plain span, e.g. of time.
    pub fn span(lo: f64, hi: f64) -> Scale {
        Scale { lo, hi: if hi > lo { hi } else { lo + 1.0 }, log: false }
    }

    /// 0 at `lo`, 1 at `hi`, clamped.
    pub fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            let v = v.max(self.lo * 1e-3);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Gridline positions: every decade, or five steps.
    pub fn ticks(&self) -> Vec<f64> {
        // A hand-made empty or NaN span has one line, not a NaN label.
        if self.hi.partial_cmp(&self.lo) != Some(std::cmp::Ordering::Greater) {
            return vec![self.lo];
        }
        if self.log {
            let (a, b) = (self.lo.log10().round() as i32, self.hi.log10().round() as i32);
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else {
            // A round step that makes at most seven lines: replicas count 0, 1, 2…, not 1.2.
            let span = self.hi - self.lo;
            let mag = 10f64.powf(span.log10().floor() - 1.0);
            let step = [1.0, 2.0, 2.5, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0]
                .iter()
                .map(|m| m * mag)
                .find(|step| span / step <= 7.0 + 1e-9)
                .unwrap_or(span / 4.0);
            let first = (self.lo / step - 1e-9).ceil() * step;
            let n = ((self.hi - first) / step + 1e-9).floor() as usize;
            (0..=n).map(|i| first + step * i as f64).collect()
        }
    }
}

/// A line of points; a jump in x of more than `gap` breaks it (nothing was measured there).
pub struct Line {
    /// In the legend.
    pub name: String,
    /// Stroke.
    pub color: &'static str,
    /// Dashed: the raw counterpart of a solid line.
    pub dashed: bool,
    /// (x, y).
    pub points: Vec<(f64, f64)>,
}

/// A bar from 0 to `value` centred on `x`.
pub struct Bar {
    /// Centre.
    pub x: f64,
    /// Width in x units.
    pub width: f64,
    /// Height.
    pub value: f64,
    /// Fill.
    pub color: &'static str,
    /// Printed above the bar.
    pub label: Option<String>,
}

/// A shaded stretch of x, e.g. a phase's ramp.
pub struct Band {
    /// From.
    pub x0: f64,
    /// To.
    pub x1: f64,
    /// Fill.
    pub fill: &'static str,
    /// Printed at its top left.
    pub label: String,
}

/// A horizontal reference line, e.g. the SLO.
pub struct Rule {
    /// Where.
    pub y: f64,
    /// Stroke.
    pub color: &'static str,
    /// Printed at its right end.
    pub label: String,
}

/// A vertical event marker.
#[derive(Clone)]
pub struct Mark {
    /// Where.
    pub x: f64,
    /// Stroke and text.
    pub color: &'static str,
    /// Printed beside it.
    pub label: String,
}

/// One chart.
pub struct Chart {
    /// Above the plot.
    pub title: String,
    /// Size in px.
    pub width: f64,
    /// See `width`.
    pub height: f64,
    /// The horizontal axis.
    pub x: Scale,
    /// Labels of the horizontal axis at chosen positions (percentiles, replica counts); `None`:
    /// its round ticks, each with `x_unit`.
    pub x_labels: Option<Vec<(f64, String)>>,
    /// See `x_labels`.
    pub x_unit: String,
    /// The vertical axis.
    pub y: Scale,
    /// After each value label.
    pub y_unit: String,
    /// Drawn first.
    pub bands: Vec<Band>,
    /// Drawn over the bands.
    pub bars: Vec<Bar>,
    /// Drawn over the bars.
    pub lines: Vec<Line>,
    /// Horizontal references.
    pub rules: Vec<Rule>,
    /// Vertical markers.
    pub marks: Vec<Mark>,
    /// A break in a line wider than this (x units).
    pub gap: f64,
}

const PAD_L: f64 = 58.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 40.0;
const PAD_B: f64 = 24.0;

impl Chart {
    /// An empty chart of this size and axes.
    pub fn new(title: impl Into<String>, width: f64, height: f64, x: Scale, y: Scale) -> Chart {
        Chart {
            title: title.into(),
            width,
            height,
            x,
            x_labels: None,
            x_unit: String::new(),
            y,
            y_unit: String::new(),
            bands: Vec::new(),
            bars: Vec::new(),
            lines: Vec::new(),
            rules: Vec::new(),
            marks: Vec::new(),
            gap: 2.5,
        }
    }

    fn px(&self, x: f64) -> f64 {
        PAD_L + self.x.frac(x) * (self.width - PAD_L - PAD_R)
    }

    fn py(&self, y: f64) -> f64 {
        self.height - PAD_B - self.y.frac(y) * (self.height - PAD_T - PAD_B)
    }

    /// The SVG element.
    pub fn render(&self) -> String {
        let (w, h) = (self.width, self.height);
        let (left, right, top, bottom) = (PAD_L, w - PAD_R, PAD_T, h - PAD_B);
        let mut s = String::new();
        let _ = write!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{t}"><rect width="{w}" height="{h}" fill="#fff"/><text x="{left}" y="16" font-size="13" font-weight="bold">{t}</text>"##,
            t = esc(&self.title)
        );
        for b in &self.bands {
            let (x0, x1) = (self.px(b.x0), self.px(b.x1));
            let _ = write!(
                s,
                r##"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="{}"/>"##,
                (x1 - x0).max(0.5),
                bottom - top,
                b.fill
            );
        }
        // Names after every band, so that a short stretch's name is not hidden by the next.
        for b in self.bands.iter().filter(|b| !b.label.is_empty()) {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#555">{}</text>"##,
                self.px(b.x0) + 3.0,
                top + 10.0,
                esc(&b.label)
            );
        }
        for v in self.y.ticks() {
            let y = self.py(v);
            let _ = write!(
                s,
                r##"<line x1="{left}" x2="{right}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}{}</text>"##,
                left - 4.0,
                y + 3.0,
                num(v),
                esc(&self.y_unit)
            );
        }
        let labels = match &self.x_labels {
            Some(l) => l.clone(),
            None => self.x.ticks().into_iter().map(|v| (v, format!("{}{}", num(v), self.x_unit))).collect(),
        };
        for (v, label) in labels {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
                self.px(v),
                bottom + 14.0,
                esc(&label)
            );
        }
        let _ = write!(s, r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#999"/>"##);
        let inside = |x: f64| x >= self.x.lo && x <= self.x.hi;
        // Outside the axis, a bar or an event would be drawn at its edge, as if it happened there.
        for b in self.bars.iter().filter(|b| inside(b.x)) {
            let half = (self.px(b.x + b.width / 2.0) - self.px(b.x - b.width / 2.0)).abs() / 2.0;
            let (x, y) = (self.px(b.x), self.py(b.value));
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"##,
                x - half.max(0.5),
                (2.0 * half).max(1.0),
                (bottom - y).max(0.0),
                b.color
            );
            if let Some(l) = &b.label {
                let _ = write!(
                    s,
                    r##"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
                    y - 3.0,
                    esc(l)
                );
            }
        }
        for l in &self.lines {
            let mut runs: Vec<Vec<String>> = Vec::new();
            let mut last = f64::NEG_INFINITY;
            for (x, y) in &l.points {
                if *x - last > self.gap || runs.is_empty() {
                    runs.push(Vec::new());
                }
                runs.last_mut().expect("pushed").push(format!("{:.1},{:.1}", self.px(*x), self.py(*y)));
                last = *x;
            }
            let dash = if l.dashed { r#" stroke-dasharray="5 3""# } else { "" };
            for pts in runs {
                let _ = write!(
                    s,
                    r##"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"##,
                    l.color,
                    pts.join(" ")
                );
            }
        }
        for r in &self.rules {
            let y = self.py(r.y);
            let _ = write!(
                s,
                r##"<line x1="{left}" x2="{right}" y1="{y:.1}" y2="{y:.1}" stroke="{c}" stroke-width="2" stroke-dasharray="8 4"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="{c}">{}</text>"##,
                right - 2.0,
                y - 4.0,
                esc(&r.label),
                c = r.color
            );
        }
        for (i, m) in self.marks.iter().filter(|m| inside(m.x)).enumerate() {
            let x = self.px(m.x);
            // Events come close together (a kill, its replacement, the recovery): their labels
            // step down so none hides another.
            let label_y = top + 20.0 + 11.0 * (i % 3) as f64;
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{bottom}" stroke="{c}" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="9" fill="{c}">{}</text>"##,
                x + 2.0,
                label_y,
                esc(&m.label),
                c = m.color
            );
        }
        // The legend has a row of its own under the title, left to right: long method names
        // never run into the title.
        let mut lx = left;
        for l in self.lines.iter().filter(|l| !l.name.is_empty()) {
            let dash = if l.dashed { r#" stroke-dasharray="5 3""# } else { "" };
            let _ = write!(
                s,
                r##"<line x1="{lx:.0}" x2="{:.0}" y1="27" y2="27" stroke="{}" stroke-width="2"{dash}/><text x="{:.0}" y="31" font-size="11">{}</text>"##,
                lx + 14.0,
                l.color,
                lx + 17.0,
                esc(&l.name)
            );
            lx += 6.5 * l.name.chars().count() as f64 + 30.0;
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(2100.0), 2500.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn a_log_axis_spans_whole_decades_and_keeps_small_values_off_the_floor() {
        let s = Scale::decades(0.8, 120.0);
        assert_eq!((s.lo, s.hi), (0.1, 1000.0));
        assert_eq!(s.ticks(), [0.1, 1.0, 10.0, 100.0, 1000.0]);
        // p50 of 0.8 ms sits a good way up, not on the axis as on a 0–100 ms linear one.
        assert!(s.frac(0.8) > 0.2, "{}", s.frac(0.8));
        assert!((s.frac(10.0) - 0.5).abs() < 1e-9);
        assert_eq!(s.frac(0.0), 0.0, "zero clamps to the floor");
        assert_eq!(Scale::decades(5.0, 5.0).hi, 10.0, "one value still spans a decade");
    }

    #[test]
    fn linear_gridlines_fall_on_round_steps() {
        assert_eq!(Scale::zero_to(5.0).ticks(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(Scale::zero_to(180.0).ticks(), [0.0, 50.0, 100.0, 150.0, 200.0]);
        assert_eq!(Scale::zero_to(2100.0).ticks(), [0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0]);
        assert_eq!(
            Scale::zero_to(0.0).ticks().iter().map(|v| num(*v)).collect::<Vec<_>>(),
            ["0", "0.2", "0.4", "0.6", "0.8", "1"]
        );
    }

    #[test]
    fn a_time_axis_is_labelled_at_round_seconds() {
        assert_eq!(Scale::span(4.0, 26.0).ticks(), [5.0, 10.0, 15.0, 20.0, 25.0]);
        assert_eq!(Scale::span(-1.0, 60.0).ticks(), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(250.0), "250");
        assert_eq!(num(25_000.0), "25k");
        assert_eq!(num(1_500_000.0), "1.5M");
    }
}
