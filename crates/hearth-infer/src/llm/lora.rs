//! Loading and freeing LoRA adapters on a model the engine shares.
//!
//! llama-cpp-2 loads an adapter only through `&mut LlamaModel` (the model here is shared by
//! the handles, for tokenizing) and never frees one (llama.cpp frees adapters with their
//! model, so an adapter unloaded while serving would stay in memory until the model goes).
//! This module calls llama.cpp's own functions for both. It relies on two wrappers being
//! `#[repr(transparent)]` over a non-null pointer, as llama-cpp-2 declares them
//! (`LlamaModel` over `*mut llama_model`, `LlamaLoraAdapter` over `*mut llama_adapter_lora`);
//! the size assertions below stop the build if that changes.
//!
//! Both run on the engine thread only: llama.cpp records a model's adapters in a set that
//! loading and freeing change and that the context reads when it plans its graph.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::Path;
use std::ptr::NonNull;

use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_sys_2::{llama_adapter_lora, llama_model};

const _: () = assert!(std::mem::size_of::<LlamaModel>() == std::mem::size_of::<*mut llama_model>());
const _: () = assert!(
    std::mem::size_of::<LlamaLoraAdapter>() == std::mem::size_of::<NonNull<llama_adapter_lora>>()
);

/// Loads the adapter at `path` onto `model`. llama.cpp says why it refuses one only in its
/// log; the error says so.
pub(super) fn load(model: &LlamaModel, path: &Path) -> Result<LlamaLoraAdapter, String> {
    let path = path
        .to_str()
        .ok_or_else(|| format!("the path {} is not UTF-8", path.display()))?;
    let path = CString::new(path).map_err(|_| "the path holds a NUL byte".to_owned())?;
    // SAFETY: `LlamaModel` is a transparent wrapper of the model's non-null pointer (asserted
    // above), valid for as long as `model` is borrowed.
    let raw: *mut llama_model = unsafe { *std::ptr::from_ref(model).cast::<*mut llama_model>() };
    // SAFETY: a valid model and a NUL-terminated path; llama.cpp returns null on failure.
    let adapter = unsafe { llama_cpp_sys_2::llama_adapter_lora_init(raw, path.as_ptr()) };
    let adapter = NonNull::new(adapter).ok_or_else(|| {
        "llama.cpp could not load the adapter (HEARTH_LLAMA_LOG=1 shows its reason)".to_owned()
    })?;
    // SAFETY: `LlamaLoraAdapter` is a transparent wrapper of this non-null pointer.
    Ok(unsafe { std::mem::transmute::<NonNull<llama_adapter_lora>, LlamaLoraAdapter>(adapter) })
}

/// Frees an adapter [`load`] made. No context may have it set any more.
pub(super) fn free(adapter: LlamaLoraAdapter) {
    // SAFETY: the inverse of the transmute in `load`.
    let raw =
        unsafe { std::mem::transmute::<LlamaLoraAdapter, NonNull<llama_adapter_lora>>(adapter) };
    // SAFETY: an adapter llama.cpp made and nothing uses any more; it leaves its model's set.
    unsafe { llama_cpp_sys_2::llama_adapter_lora_free(raw.as_ptr()) };
}
