//! PNG plots for the evaluation harness (`umbractl eval ... --plot FILE`):
//! a small RGB canvas (rectangles, lines) and a PNG encoder (RFC 2083:
//! IHDR, one zlib IDAT of unfiltered rows, IEND; flate2 and crc32fast are
//! already in the tree), and the NAB figure: one panel per series with its
//! values, labeled windows shaded, the probationary prefix greyed and
//! alarm onsets marked.

use std::io::Write as _;

pub type Rgb = [u8; 3];

pub const WHITE: Rgb = [255, 255, 255];
pub const BLUE: Rgb = [31, 90, 170];
pub const RED: Rgb = [210, 40, 40];
pub const WINDOW: Rgb = [255, 214, 214];
pub const PROBATION: Rgb = [232, 232, 232];
pub const FRAME: Rgb = [120, 120, 120];

#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    px: Vec<Rgb>,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            px: vec![WHITE; width as usize * height as usize],
        }
    }

    pub fn get(&self, x: u32, y: u32) -> Rgb {
        self.px[y as usize * self.width as usize + x as usize]
    }

    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if (0..i64::from(self.width)).contains(&x) && (0..i64::from(self.height)).contains(&y) {
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
            let i = y as usize * self.width as usize + x as usize;
            self.px[i] = c;
        }
    }

    /// Fill `[x0, x1) × [y0, y1)`, clipped.
    pub fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.max(0)..y1.min(i64::from(self.height)) {
            for x in x0.max(0)..x1.min(i64::from(self.width)) {
                self.set(x, y, c);
            }
        }
    }

    /// A one-pixel line (Bresenham), clipped.
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// The canvas as a PNG file (8-bit RGB).
    pub fn png(&self) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(
                &u32::try_from(data.len())
                    .expect("chunk under 4 GiB")
                    .to_be_bytes(),
            );
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let mut h = crc32fast::Hasher::new();
            h.update(kind);
            h.update(data);
            out.extend_from_slice(&h.finalize().to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&self.width.to_be_bytes());
        ihdr.extend_from_slice(&self.height.to_be_bytes());
        // 8-bit depth, colour type 2 (RGB), deflate, filter method 0, no interlace.
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        let mut row = Vec::with_capacity(1 + 3 * self.width as usize);
        for y in 0..self.height as usize {
            row.clear();
            row.push(0); // filter type None
            for p in &self.px[y * self.width as usize..(y + 1) * self.width as usize] {
                row.extend_from_slice(p);
            }
            z.write_all(&row).expect("writing to memory");
        }
        chunk(&mut out, b"IDAT", &z.finish().expect("writing to memory"));
        chunk(&mut out, b"IEND", &[]);
        out
    }
}

/// One NAB series as scored: its values, labeled windows, probationary
/// prefix and alarm onsets (row indices).
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub name: String,
    pub ts: Vec<i64>,
    pub values: Vec<f32>,
    pub windows: Vec<(i64, i64)>,
    pub probation: usize,
    pub onsets: Vec<usize>,
}

/// Panels stacked vertically, `width` wide and `panel` high each.
pub fn traces_png(traces: &[Trace], width: u32, panel: u32) -> Vec<u8> {
    let n = u32::try_from(traces.len()).unwrap_or(u32::MAX).max(1);
    let mut c = Canvas::new(width, panel.saturating_mul(n));
    let (w, h) = (i64::from(width), i64::from(panel));
    let margin = 4i64;
    for (k, t) in traces.iter().enumerate() {
        let top = i64::try_from(k).unwrap_or(0) * h;
        let rows = t.values.len().max(2);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let x_of =
            |i: usize| margin + ((w - 2 * margin - 1) as f64 * i as f64 / (rows - 1) as f64) as i64;
        let x_of_ts = |ts: i64| x_of(t.ts.iter().position(|&x| x >= ts).unwrap_or(rows - 1));
        c.rect(
            x_of(0),
            top + margin,
            x_of(t.probation),
            top + h - margin,
            PROBATION,
        );
        for &(a, b) in &t.windows {
            c.rect(
                x_of_ts(a),
                top + margin,
                x_of_ts(b) + 1,
                top + h - margin,
                WINDOW,
            );
        }
        let finite = t.values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(l, u), v| {
            (l.min(v), u.max(v))
        });
        let span = if hi > lo { f64::from(hi - lo) } else { 1.0 };
        #[allow(clippy::cast_possible_truncation)]
        let y_of = |v: f32| {
            top + h - margin - 1 - ((f64::from(v - lo) / span) * (h - 2 * margin - 1) as f64) as i64
        };
        let mut prev: Option<(i64, i64)> = None;
        for (i, &v) in t.values.iter().enumerate() {
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let p = (x_of(i), y_of(v));
            if let Some(q) = prev {
                c.line(q, p, BLUE);
            }
            prev = Some(p);
        }
        for &o in &t.onsets {
            let x = x_of(o);
            c.rect(x, top + margin, x + 2, top + h - margin, RED);
        }
        c.rect(0, top + h - 1, w, top + h, FRAME);
    }
    c.png()
}

/// A reliability diagram on log–log axes (10^-6 … 1): the diagonal of
/// perfect calibration in grey, one square per bin at (mean predicted,
/// observed frequency), bigger for more drive-days; a bin that observed no
/// failure sits on the bottom edge in red.
pub fn reliability_png(curve: &[(f64, f64, usize)], size: u32) -> Vec<u8> {
    const DECADES: f64 = 6.0;
    let mut c = Canvas::new(size, size);
    let s = i64::from(size);
    let margin = 10i64;
    let span = (s - 2 * margin - 1) as f64;
    #[allow(clippy::cast_possible_truncation)]
    let at = |v: f64| ((v.max(1e-6).log10() + DECADES) / DECADES * span) as i64;
    c.rect(0, 0, s, 1, FRAME);
    c.rect(0, s - 1, s, s, FRAME);
    c.rect(0, 0, 1, s, FRAME);
    c.rect(s - 1, 0, s, s, FRAME);
    // Decade grid, then the diagonal.
    for d in 0..=6 {
        let g = margin + at(10f64.powi(-d));
        c.rect(g, margin, g + 1, s - margin, PROBATION);
        c.rect(margin, s - 1 - g, s - margin, s - g, PROBATION);
    }
    c.line((margin, s - 1 - margin), (s - 1 - margin, margin), FRAME);
    for &(p, o, n) in curve {
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let r = 2 + ((n.max(1) as f64).log10() * 1.5) as i64;
        let x = margin + at(p);
        let (y, colour) = if o > 0.0 {
            (s - 1 - margin - at(o), BLUE)
        } else {
            (s - 1 - margin, RED)
        };
        c.rect(x - r, y - r, x + r + 1, y + r + 1, colour);
    }
    c.png()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// Decode what `png()` writes: chunks with their CRCs checked, the
    /// inflated rows.
    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let (mut pos, mut dims, mut idat) = (8, (0, 0), Vec::new());
        loop {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let kind = &png[pos + 4..pos + 8];
            let data = &png[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            let mut h = crc32fast::Hasher::new();
            h.update(kind);
            h.update(data);
            assert_eq!(h.finalize(), crc, "CRC of {:?}", std::str::from_utf8(kind));
            match kind {
                b"IHDR" => {
                    dims = (
                        u32::from_be_bytes(data[..4].try_into().unwrap()),
                        u32::from_be_bytes(data[4..8].try_into().unwrap()),
                    );
                    assert_eq!(&data[8..], &[8, 2, 0, 0, 0]);
                }
                b"IDAT" => idat.extend_from_slice(data),
                b"IEND" => break,
                other => panic!("unexpected chunk {other:?}"),
            }
            pos += 12 + len;
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..])
            .read_to_end(&mut raw)
            .unwrap();
        (dims.0, dims.1, raw)
    }

    #[test]
    fn png_round_trips_through_a_decoder() {
        let mut c = Canvas::new(3, 2);
        c.set(0, 0, RED);
        c.set(2, 1, BLUE);
        c.set(5, 5, RED); // clipped, no panic
        let (w, h, raw) = decode(&c.png());
        assert_eq!((w, h), (3, 2));
        assert_eq!(raw.len(), 2 * (1 + 9));
        assert_eq!(&raw[..4], &[0, 210, 40, 40]);
        assert_eq!(&raw[17..20], &BLUE);
    }

    #[test]
    fn lines_reach_both_ends() {
        let mut c = Canvas::new(10, 10);
        c.line((0, 9), (9, 0), BLUE);
        assert_eq!(c.get(0, 9), BLUE);
        assert_eq!(c.get(9, 0), BLUE);
        assert_eq!(c.get(5, 4), BLUE);
    }

    #[test]
    fn reliability_points_land_where_their_values_say() {
        // A perfectly calibrated bin at 10^-3 lies on the diagonal; a bin
        // with no failures goes to the bottom edge in red.
        let png = reliability_png(&[(1e-3, 1e-3, 1000), (1e-2, 0.0, 10)], 200);
        let (w, h, raw) = decode(&png);
        assert_eq!((w, h), (200, 200));
        let px = |x: usize, y: usize| {
            let o = y * (1 + 3 * 200) + 1 + 3 * x;
            [raw[o], raw[o + 1], raw[o + 2]]
        };
        // 10^-3 is half-way along both axes of 6 decades (179 px): 10 + 89.
        let mid = 99;
        assert_eq!(px(mid, 199 - mid), BLUE);
        // 10^-2 is four decades along: 10 + 119.
        assert_eq!(px(129, 189), RED);
    }

    #[test]
    fn nab_panels_show_windows_alarms_and_values() {
        let t = Trace {
            name: "s".into(),
            ts: (0..100).map(|i| i * 60).collect(),
            #[allow(clippy::cast_precision_loss)]
            values: (0..100).map(|i| (i as f32 / 10.0).sin()).collect(),
            windows: vec![(60 * 60, 70 * 60)],
            probation: 15,
            onsets: vec![65],
        };
        let png = traces_png(&[t.clone(), t], 200, 50);
        let (w, h, raw) = decode(&png);
        assert_eq!((w, h), (200, 100));
        let colours: std::collections::BTreeSet<Rgb> = raw
            .chunks(1 + 3 * 200)
            .flat_map(|row| row[1..].chunks(3).map(|p| [p[0], p[1], p[2]]))
            .collect();
        for c in [WINDOW, RED, BLUE, PROBATION] {
            assert!(colours.contains(&c), "{c:?} missing");
        }
    }
}
