//! Example clients; see the [[example]] entries.
