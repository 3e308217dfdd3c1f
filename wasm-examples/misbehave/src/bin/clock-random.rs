//! Reads the clocks and the random source: the same output twice only in
//! deterministic mode.
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let start = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut random = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut random) {
        eprintln!("clock-random: no randomness: {e}");
        std::process::exit(1);
    }
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut fsum = 0.0f64;
    for i in 0..1000 {
        fsum += (f64::from(i) * 0.1).sin();
    }
    println!("wall {wall}");
    println!("elapsed {}", start.elapsed().as_nanos());
    println!("random {hex}");
    println!("float {fsum:.12}");
}
