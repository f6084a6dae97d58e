//! Shared helpers for integration tests.

pub mod agent;
pub mod receiver;
