//! The bids file: deterministic, ~1000 auctions, event time advancing one
//! millisecond per row (1000 rows per second) with up to 1 s of disorder.

use std::io::{BufWriter, Write};
use std::path::Path;

/// splitmix64: a fixed, seedable stream of pseudo-random numbers.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn write_bids(path: &Path, rows: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    for i in 0..rows {
        let r = mix(i);
        let auction = 1000 + r % 1000;
        let bidder = (r >> 10) % 100_000;
        let price = 100 + (r >> 27) % 10_000;
        let late_ms = (r >> 41) % 1000;
        let ms = i.saturating_sub(late_ms);
        let (secs, milli) = (ms / 1000, ms % 1000);
        let (day, rem) = (secs / 86_400, secs % 86_400);
        writeln!(
            out,
            "{auction},{bidder},{price},2024-01-{:02} {:02}:{:02}:{:02}.{milli:03}",
            1 + day,
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(tmp, path)
}
