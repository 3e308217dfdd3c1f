//! Integration tests of phase-node; see the files under tests/.
