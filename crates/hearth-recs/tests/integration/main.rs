//! hearth-recs's integration tests, one module per area, in one binary: every test binary links the
//! whole crate graph, llama.cpp included, so one binary links it once instead of once per file.

mod import;
mod large_catalogue;
mod models;
mod movielens;
mod store;
