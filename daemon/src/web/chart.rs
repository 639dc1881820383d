//! Small horizontal bar charts, drawn as SVG by the server (no JavaScript):
//! a label, a bar as long as its share of the largest value, and the value
//! as people read it; and trend lines of a value per month. Used by the
//! dashboards and the scorecards.

/// One bar, laid out.
pub struct Bar {
    pub label: String,
    /// The value as shown (money, a count).
    pub shown: String,
    pub y: u32,
    pub width: u32,
    /// Where the label and the value text sit (their baseline).
    pub text_y: u32,
    pub value_x: u32,
}

/// A chart ready for the template.
pub struct Chart {
    pub title: String,
    pub bars: Vec<Bar>,
    pub height: u32,
}

/// Where bars start (the labels are left of it) and their longest length.
pub const BAR_X: u32 = 150;
const BAR_MAX: u32 = 220;
const ROW: u32 = 24;

/// A chart of `(label, value, shown)` rows; bars in proportion to the
/// largest value (negative values draw no bar).
pub fn bars(title: String, rows: Vec<(String, i64, String)>) -> Chart {
    let max = rows.iter().map(|(_, v, _)| *v).max().unwrap_or(0).max(1);
    let bars = rows
        .into_iter()
        .enumerate()
        .map(|(i, (label, value, shown))| {
            let width = if value <= 0 {
                0
            } else {
                // At least a sliver for any value above zero.
                (i128::from(value) * i128::from(BAR_MAX) / i128::from(max)).max(2) as u32
            };
            let y = i as u32 * ROW + 4;
            Bar {
                label,
                shown,
                y,
                width,
                text_y: y + 13,
                value_x: BAR_X + width + 6,
            }
        })
        .collect::<Vec<_>>();
    Chart {
        title,
        height: bars.len() as u32 * ROW + 8,
        bars,
    }
}

/// One point of a trend line, laid out.
pub struct Point {
    pub label: String,
    pub shown: String,
    pub x: u32,
    pub y: u32,
}

/// A trend line ready for the template: its points, the polyline through
/// them, and the first and last labels under the axis.
pub struct Trend {
    pub title: String,
    pub points: Vec<Point>,
    pub path: String,
}

const TREND_W: u32 = 460;
const TREND_H: u32 = 100;
const TREND_TOP: u32 = 10;

/// A trend of `(label, value, shown)` points, left to right, scaled to the
/// largest value (values under zero sit on the axis).
pub fn trend(title: String, rows: Vec<(String, i64, String)>) -> Trend {
    let max = rows.iter().map(|(_, v, _)| *v).max().unwrap_or(0).max(1);
    let steps = rows.len().saturating_sub(1).max(1) as u32;
    let points: Vec<Point> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (label, value, shown))| {
            let h = (i128::from(value.max(0)) * i128::from(TREND_H) / i128::from(max)) as u32;
            Point {
                label,
                shown,
                x: 10 + i as u32 * TREND_W / steps,
                y: TREND_TOP + TREND_H - h,
            }
        })
        .collect();
    let path = points
        .iter()
        .map(|p| format!("{},{}", p.x, p.y))
        .collect::<Vec<_>>()
        .join(" ");
    Trend {
        title,
        points,
        path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_in_proportion_to_the_largest() {
        let c = bars(
            "t".into(),
            vec![
                ("a".into(), 10, "10".into()),
                ("b".into(), 5, "5".into()),
                ("c".into(), 0, "0".into()),
                ("d".into(), 1, "1".into()),
            ],
        );
        let widths: Vec<u32> = c.bars.iter().map(|b| b.width).collect();
        assert_eq!(widths, vec![220, 110, 0, 22]);
        assert_eq!(c.height, 4 * 24 + 8);
        assert_eq!(c.bars[1].y, 28);
    }

    #[test]
    fn a_trend_spans_the_width_and_scales_to_the_largest() {
        let t = trend(
            "t".into(),
            vec![
                ("2026-01".into(), 4, "4".into()),
                ("2026-02".into(), 0, "0".into()),
                ("2026-03".into(), 2, "2".into()),
            ],
        );
        let at: Vec<(u32, u32)> = t.points.iter().map(|p| (p.x, p.y)).collect();
        assert_eq!(at, vec![(10, 10), (240, 110), (470, 60)]);
        assert_eq!(t.path, "10,10 240,110 470,60");
    }
}
