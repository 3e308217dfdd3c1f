//! Allocates (and touches) memory without end: must end at the memory limit.
fn main() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = 1;
        block[(1 << 20) - 1] = 1;
        held.push(std::hint::black_box(block));
    }
}
