//! Guests that misbehave on purpose; each binary in src/bin is one kind.
