//! The telegen agent: flags, discovery, lifecycle. The binary (`main.rs`) is a thin shell over
//! this library so the pieces are testable.

pub mod cli;
pub mod discovery;
pub mod run;
