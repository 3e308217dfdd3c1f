//! Recurses without end: must end with a stack-overflow trap.
#![allow(unconditional_recursion)]
fn deeper(n: u64) -> u64 {
    let local = std::hint::black_box([n; 16]);
    deeper(local[3] + 1) + local[7]
}

fn main() {
    println!("{}", deeper(0));
}
