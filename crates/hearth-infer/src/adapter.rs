//! LoRA adapters in llama.cpp's GGUF layout (what `convert_lora_to_gguf.py` writes): what one
//! holds, and whether it fits a base model.
//!
//! llama.cpp checks the same things when it loads an adapter, but says why only in its log;
//! checked here first, from both files' headers, a refusal names the tensor and both shapes.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::gguf::{self, Header};
use crate::InferError;

/// What an adapter's header says.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterHeader {
    /// `general.architecture`: the base model's architecture it was made for.
    pub architecture: String,
    /// The rank of its low-rank matrices (the largest, when they differ).
    pub rank: u64,
    /// `adapter.lora.alpha`; llama.cpp scales the update by `alpha / rank` when it is set.
    pub alpha: Option<f64>,
    /// Base weights it changes.
    pub targets: usize,
    /// Bytes on disk.
    pub size_bytes: u64,
}

/// The tensors of one base weight's update.
struct Pair<'h> {
    target: String,
    a: Option<&'h [u64]>,
    b: Option<&'h [u64]>,
}

pub(crate) fn read_header(path: &Path) -> Result<Header, InferError> {
    let invalid = |reason: String| InferError::InvalidModel {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| invalid(format!("cannot open it ({e})")))?;
    let size = file
        .metadata()
        .map_err(|e| invalid(format!("cannot read it ({e})")))?
        .len();
    gguf::read_header(BufReader::with_capacity(1 << 16, file), size).map_err(|e| invalid(e.0))
}

/// Whether a GGUF header is an adapter's rather than a model's.
pub(crate) fn is_adapter(header: &Header) -> bool {
    header.string("general.type").as_deref() == Some("adapter")
}

/// Reads an adapter's header and checks that it is a LoRA adapter llama.cpp can load.
pub fn inspect_adapter(path: &Path) -> Result<AdapterHeader, InferError> {
    let header = read_header(path)?;
    let size_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    adapter_header(path, &header, size_bytes)
}

fn adapter_header(
    path: &Path,
    header: &Header,
    size_bytes: u64,
) -> Result<AdapterHeader, InferError> {
    let invalid = |reason: String| InferError::InvalidModel {
        path: path.to_path_buf(),
        reason,
    };
    match header.string("general.type").as_deref() {
        Some("adapter") => {}
        Some(other) => {
            return Err(invalid(format!(
                "not an adapter (its general.type is '{other}'); a model is imported without --base"
            )))
        }
        None => return Err(invalid(
            "not an adapter (it has no general.type 'adapter'); a model is imported without --base"
                .into(),
        )),
    }
    match header.string("adapter.type").as_deref() {
        Some("lora") => {}
        other => {
            return Err(invalid(format!(
                "a '{}' adapter; hearth loads LoRA adapters (adapter.type 'lora')",
                other.unwrap_or("untyped")
            )))
        }
    }
    let architecture = header
        .string("general.architecture")
        .ok_or_else(|| invalid("the adapter does not say its architecture".into()))?;
    let pairs = pairs(header).map_err(invalid)?;
    if pairs.is_empty() {
        return Err(invalid("the adapter holds no LoRA tensors".into()));
    }
    let mut rank = 0;
    for pair in &pairs {
        let (Some(a), Some(b)) = (pair.a, pair.b) else {
            return Err(invalid(format!(
                "the update of '{}' lacks its {} tensor",
                pair.target,
                if pair.a.is_none() { "lora_a" } else { "lora_b" }
            )));
        };
        if a.len() != 2 || b.len() != 2 {
            return Err(invalid(format!(
                "the update of '{}' is not two matrices (lora_a {a:?}, lora_b {b:?})",
                pair.target
            )));
        }
        rank = rank.max(a[1].min(b[0]));
    }
    Ok(AdapterHeader {
        architecture,
        rank,
        alpha: header.float("adapter.lora.alpha").filter(|a| *a != 0.0),
        targets: pairs.len(),
        size_bytes,
    })
}

/// The adapter's tensors grouped by the base weight they change.
fn pairs(header: &Header) -> Result<Vec<Pair<'_>>, String> {
    let mut pairs: Vec<Pair<'_>> = Vec::new();
    for (name, shape) in &header.tensors {
        let (target, is_a) = if let Some(target) = name.strip_suffix(".lora_a") {
            (target, true)
        } else if let Some(target) = name.strip_suffix(".lora_b") {
            (target, false)
        } else if name.ends_with("_norm.weight") {
            continue; // llama.cpp skips norm vectors too
        } else {
            return Err(format!(
                "tensor '{name}' is not a LoRA tensor (.lora_a or .lora_b)"
            ));
        };
        let index = match pairs.iter().position(|p| p.target == target) {
            Some(i) => i,
            None => {
                pairs.push(Pair {
                    target: target.to_owned(),
                    a: None,
                    b: None,
                });
                pairs.len() - 1
            }
        };
        let slot = if is_a {
            &mut pairs[index].a
        } else {
            &mut pairs[index].b
        };
        *slot = Some(shape.as_slice());
    }
    Ok(pairs)
}

/// Checks that the adapter at `adapter` fits the base model at `base` (named `base_name` in
/// errors): same architecture, and every weight it changes is in the base with the shape its
/// update needs.
pub fn check_fits(
    adapter: &Path,
    base: &Path,
    base_name: &str,
) -> Result<AdapterHeader, InferError> {
    let header = read_header(adapter)?;
    let size_bytes = std::fs::metadata(adapter).map(|m| m.len()).unwrap_or(0);
    let info = adapter_header(adapter, &header, size_bytes)?;
    let base_header = read_header(base)?;
    if is_adapter(&base_header) {
        return Err(InferError::InvalidParameter {
            param: "base".into(),
            message: format!("'{base_name}' is itself an adapter; the base must be a model"),
        });
    }
    fits(adapter, &header, &info, &base_header, base_name)?;
    Ok(info)
}

fn fits(
    path: &Path,
    adapter: &Header,
    info: &AdapterHeader,
    base: &Header,
    base_name: &str,
) -> Result<(), InferError> {
    let invalid = |reason: String| InferError::InvalidModel {
        path: path.to_path_buf(),
        reason,
    };
    let base_arch = base.string("general.architecture").unwrap_or_default();
    if base_arch != info.architecture {
        return Err(invalid(format!(
            "the adapter is for the '{}' architecture, but the base '{base_name}' is '{base_arch}'; it needs a base of the model it was trained on",
            info.architecture
        )));
    }
    for pair in pairs(adapter).map_err(invalid)? {
        let (Some(a), Some(b)) = (pair.a, pair.b) else {
            continue; // refused by adapter_header
        };
        let Some((_, weight)) = base.tensors.iter().find(|(name, _)| *name == pair.target) else {
            return Err(invalid(format!(
                "the adapter changes '{}', which the base '{base_name}' does not have (an adapter for another model?)",
                pair.target
            )));
        };
        if weight.len() != 2 {
            return Err(invalid(format!(
                "the adapter changes '{}', which is not a matrix in the base '{base_name}' (shape {weight:?})",
                pair.target
            )));
        }
        // ggml order: a weight is [inputs, outputs]; lora_a [inputs, rank], lora_b [rank,
        // outputs]. The token embedding's update is stored the other way round
        // (llama.cpp's llm_build_inp_embd).
        let (inputs, outputs) = if pair.target == "token_embd.weight" {
            (a[1], b[1])
        } else {
            (a[0], b[1])
        };
        let (want_in, want_out) = if pair.target == "token_embd.weight" {
            (weight[1], weight[0])
        } else {
            (weight[0], weight[1])
        };
        if inputs != want_in || outputs != want_out {
            return Err(invalid(format!(
                "'{}' maps {want_in} inputs to {want_out} outputs in the base '{base_name}' (shape {weight:?}), but the adapter's update maps {inputs} to {outputs} (lora_a {a:?}, lora_b {b:?}): an adapter trained for a base of another size",
                pair.target
            )));
        }
        if pair.target != "token_embd.weight" && a[1] != b[0] {
            return Err(invalid(format!(
                "the update of '{}' has lora_a {a:?} and lora_b {b:?}, whose ranks differ (lora_a must be stored transposed, as convert_lora_to_gguf.py writes it)",
                pair.target
            )));
        }
    }
    Ok(())
}
