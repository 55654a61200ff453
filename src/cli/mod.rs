//! Binary-only parts of the command line.

pub mod generate;
pub mod pull_view;
