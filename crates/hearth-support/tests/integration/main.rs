//! hearth-support's integration tests, one module per area, in one binary: every test binary links the
//! whole crate graph, llama.cpp included, so one binary links it once instead of once per file.

mod demo_shop;
mod intents;
mod kb;
mod tools;
