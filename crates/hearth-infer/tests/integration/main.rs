//! hearth-infer's integration tests, one module per area, in one binary: every test binary links the
//! whole crate graph, llama.cpp included, so one binary links it once instead of once per file.

mod chat_templates;
mod cross_encoder;
mod embed;
mod hub;
mod llm;
mod lora;
mod registry;
