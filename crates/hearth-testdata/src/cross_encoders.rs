//! The small random cross-encoders of hearth-infer's parity tests, made whole.
//!
//! scripts/make-cross-encoder-fixture.py wrote each checkpoint with transformers, recorded
//! transformers' logits (reference.json) and, instead of the weights, their recipe
//! (weights.json): every tensor comes from a generator simple enough to write again here, so
//! the repository holds no weights. [`cross_encoder_dir`] writes model.safetensors from the
//! recipe, bit for bit the file transformers saved, beside copies of the committed files.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde::Deserialize;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Deserialize)]
struct Recipe {
    seed: u64,
    tensors: Vec<TensorRecipe>,
}

#[derive(Deserialize)]
struct TensorRecipe {
    name: String,
    shape: Vec<usize>,
    offset: f64,
    scale: f64,
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

fn splitmix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The values of one tensor: `f32(offset + scale * u_i)`, `u_i` uniform in [-1, 1).
fn values(recipe: &TensorRecipe, seed: u64) -> Vec<f32> {
    let seed = fnv1a64(&recipe.name) ^ seed;
    let count: usize = recipe.shape.iter().product();
    (1..=count as u64)
        .map(|i| {
            let z = splitmix64(seed.wrapping_add(i.wrapping_mul(GOLDEN)));
            let u = (z >> 40) as f64 / f64::from(1u32 << 24) * 2.0 - 1.0;
            (recipe.offset + recipe.scale * u) as f32
        })
        .collect()
}

/// The source folder of fixture `name` (`bert`, `xlm-roberta`).
fn source(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../hearth-infer/tests/fixtures/cross-encoders")
        .join(name)
}

/// A loadable CrossEncoder folder of fixture `name` (`bert`, `xlm-roberta`): the committed
/// files and model.safetensors made from weights.json, in the system's temporary directory
/// (made once, then reused while weights.json is unchanged).
pub fn cross_encoder_dir(name: &str) -> PathBuf {
    let src = source(name);
    let recipe_text = std::fs::read_to_string(src.join("weights.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", src.join("weights.json").display()));
    let stamp = fnv1a64(&recipe_text);
    let dir = std::env::temp_dir()
        .join("hearth-test-fixtures")
        .join(format!("cross-encoder-{name}-{stamp:016x}"));
    if dir.join("model.safetensors").is_file() {
        return dir;
    }
    // Made in a folder of its own and renamed into place, so concurrent tests never see half.
    let parent = dir.parent().expect("a parent");
    std::fs::create_dir_all(parent).expect("create the fixtures folder");
    let partial = parent.join(format!(
        ".{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).expect("create a fixture folder");
    for entry in std::fs::read_dir(&src).expect("read the fixture") {
        let path = entry.expect("entry").path();
        let file = path.file_name().expect("a file name");
        if file != "weights.json" && path.is_file() {
            std::fs::copy(&path, partial.join(file)).expect("copy a fixture file");
        }
    }
    write_weights(&recipe_text, &partial.join("model.safetensors"));
    if std::fs::rename(&partial, &dir).is_err() {
        // Another test made it first.
        let _ = std::fs::remove_dir_all(&partial);
    }
    assert!(dir.join("model.safetensors").is_file(), "{}", dir.display());
    dir
}

fn write_weights(recipe_text: &str, path: &Path) {
    let recipe: Recipe = serde_json::from_str(recipe_text).expect("weights.json");
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = recipe
        .tensors
        .iter()
        .map(|t| {
            let bytes = values(t, recipe.seed)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (t.name.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            (
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).expect("a tensor view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write model.safetensors");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_the_scripts() {
        // splitmix64's published first output for seed 0 is 0xE220A8397B1DCDAF.
        assert_eq!(splitmix64(GOLDEN), 0xE220_A839_7B1D_CDAF);
        assert_eq!(fnv1a64(""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xAF63_DC4C_8601_EC8C);
        let t = TensorRecipe {
            name: "x".into(),
            shape: vec![1000],
            offset: 1.0,
            scale: 0.5,
        };
        let v = values(&t, 7);
        assert!(v.iter().all(|x| (0.5..1.5).contains(x)));
        assert_ne!(v[0], v[1]);
    }
}
