//! Integration tests of phase-node; the suites are the `[[test]]` targets
//! under `tests/`. This library is empty on purpose.
