//! `lbctl`: argument parsing and output rendering (the binary is a thin shell).

pub mod args;
pub mod parse;
pub mod render;
