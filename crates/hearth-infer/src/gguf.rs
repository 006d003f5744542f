//! A GGUF header reader. candle's `gguf_file::Content::read` would do, but it refuses tensor
//! types it cannot compute with (IQ*, TQ*, MXFP4 — common on the Hub, e.g. IQ4_XS builds) and
//! allocates every tokenizer string; listing needs neither, so this reads what it needs and
//! skips the rest, bounding every length by the file size.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek};

pub(crate) struct Invalid(pub(crate) String);

impl From<std::io::Error> for Invalid {
    fn from(e: std::io::Error) -> Self {
        Invalid(if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "the header is cut short (a truncated file?)".to_string()
        } else {
            format!("cannot read it ({e})")
        })
    }
}

#[derive(Debug, Clone)]
enum Value {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    Other,
}

pub(crate) struct Header {
    metadata: HashMap<String, Value>,
    pub(crate) parameters: u64,
    /// ggml type id → elements, over tensors with two or more dimensions.
    matrix_elements: HashMap<u32, u64>,
    /// Every tensor's name and dimensions, in ggml's order (`ne[0]` first: a matrix's input
    /// features, then its outputs).
    pub(crate) tensors: Vec<(String, Vec<u64>)>,
}

impl Header {
    pub(crate) fn string(&self, key: &str) -> Option<String> {
        match self.metadata.get(key) {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub(crate) fn float(&self, key: &str) -> Option<f64> {
        match self.metadata.get(key) {
            Some(Value::Float(v)) => Some(*v),
            Some(Value::Unsigned(v)) => Some(*v as f64),
            Some(Value::Signed(v)) => Some(*v as f64),
            _ => None,
        }
    }

    pub(crate) fn unsigned(&self, key: &str) -> Option<u64> {
        match self.metadata.get(key) {
            Some(Value::Unsigned(v)) => Some(*v),
            Some(Value::Signed(v)) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The ggml type holding most weight elements, for files without `general.file_type`.
    pub(crate) fn dominant_tensor_type(&self) -> Option<&'static str> {
        self.matrix_elements
            .iter()
            .max_by_key(|(_, n)| **n)
            .and_then(|(ty, _)| tensor_type(*ty).map(|(name, _, _)| name))
    }
}

/// llama.cpp's `llama_ftype` → the name people use.
pub(crate) fn file_type_name(ftype: u64) -> Option<&'static str> {
    Some(match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

/// ggml tensor type → (name, elements per block, bytes per block).
fn tensor_type(ty: u32) -> Option<(&'static str, u64, u64)> {
    Some(match ty {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        _ => return None,
    })
}

struct Reader<R> {
    inner: BufReader<R>,
    position: u64,
    size: u64,
    /// GGUF v1 used 32-bit lengths.
    wide: bool,
}

impl<R: Read + Seek> Reader<R> {
    fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.position)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Invalid> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf)?;
        self.position += N as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, Invalid> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, Invalid> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn length(&mut self, what: &str, min_item: u64) -> Result<u64, Invalid> {
        let len = if self.wide {
            self.u64()?
        } else {
            u64::from(self.u32()?)
        };
        if len.saturating_mul(min_item) > self.remaining() {
            return Err(Invalid(format!(
                "truncated or corrupt header: {what} of length {len} runs past the end of the file (an interrupted copy or download?)"
            )));
        }
        Ok(len)
    }

    fn skip(&mut self, n: u64) -> Result<(), Invalid> {
        if n > self.remaining() {
            return Err(Invalid(
                "the header is cut short (a truncated file?)".to_string(),
            ));
        }
        let n_i64 = i64::try_from(n).map_err(|_| Invalid("corrupt header".to_string()))?;
        self.inner.seek_relative(n_i64)?;
        self.position += n;
        Ok(())
    }

    fn string(&mut self) -> Result<String, Invalid> {
        let len = self.length("a string", 1)?;
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf)?;
        self.position += len;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn skip_string(&mut self) -> Result<(), Invalid> {
        let len = self.length("a string", 1)?;
        self.skip(len)
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, Invalid> {
        Ok(match ty {
            0 => Value::Unsigned(u64::from(self.bytes::<1>()?[0])),
            1 => Value::Signed(i64::from(i8::from_le_bytes(self.bytes()?))),
            2 => Value::Unsigned(u64::from(u16::from_le_bytes(self.bytes()?))),
            3 => Value::Signed(i64::from(i16::from_le_bytes(self.bytes()?))),
            4 => Value::Unsigned(u64::from(self.u32()?)),
            5 => Value::Signed(i64::from(i32::from_le_bytes(self.bytes()?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.bytes()?))),
            7 => {
                self.skip(1)?;
                Value::Other
            }
            8 => {
                // Chat templates are kept; anything huge is not metadata we list.
                let len = self.length("a string", 1)?;
                if len > 1 << 20 {
                    self.skip(len)?;
                    Value::Other
                } else {
                    let mut buf = vec![0u8; len as usize];
                    self.inner.read_exact(&mut buf)?;
                    self.position += len;
                    Value::Text(String::from_utf8_lossy(&buf).into_owned())
                }
            }
            9 => {
                if depth > 8 {
                    return Err(Invalid("corrupt header: arrays nested too deep".into()));
                }
                let item = self.u32()?;
                match fixed_size(item) {
                    Some(width) => {
                        let len = self.length("an array", width)?;
                        self.skip(len * width)?;
                    }
                    None => {
                        let len = self.length("an array", if self.wide { 8 } else { 4 })?;
                        for _ in 0..len {
                            if item == 8 {
                                self.skip_string()?;
                            } else {
                                self.value(item, depth + 1)?;
                            }
                        }
                    }
                }
                Value::Other
            }
            10 => Value::Unsigned(self.u64()?),
            11 => Value::Signed(i64::from_le_bytes(self.bytes()?)),
            12 => Value::Float(f64::from_le_bytes(self.bytes()?)),
            other => {
                return Err(Invalid(format!(
                    "corrupt header: unknown metadata type {other}"
                )))
            }
        })
    }
}

fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

pub(crate) fn read_header<R: Read + Seek>(
    inner: BufReader<R>,
    size: u64,
) -> Result<Header, Invalid> {
    let mut reader = Reader {
        inner,
        position: 0,
        size,
        wide: true,
    };
    if size < 8 || !reader.inner.fill_buf()?.starts_with(b"GGUF") {
        let hint = if reader.inner.fill_buf()?.starts_with(b"PK") {
            " (a zip archive: unpack it first)"
        } else {
            ""
        };
        return Err(Invalid(format!(
            "not a GGUF file (no GGUF magic){hint}; hearth loads GGUF files (LLMs) and sentence-transformers directories"
        )));
    }
    reader.skip(4)?;
    let version = reader.u32()?;
    match version {
        1 => reader.wide = false,
        2 | 3 => {}
        v if v.swap_bytes() <= 3 => {
            return Err(Invalid(
                "a big-endian GGUF file; llama.cpp on this machine needs little-endian".to_string(),
            ))
        }
        v => {
            return Err(Invalid(format!(
                "GGUF version {v} is not supported (1 to 3 are)"
            )))
        }
    }
    let tensor_count = reader.length("the tensor list", 24)?;
    let kv_count = reader.length("the metadata", 13)?;
    let mut metadata = HashMap::new();
    for _ in 0..kv_count {
        let key = reader.string()?;
        let ty = reader.u32()?;
        let value = reader.value(ty, 0)?;
        metadata.insert(key, value);
    }
    let mut parameters = 0u64;
    let mut matrix_elements: HashMap<u32, u64> = HashMap::new();
    let mut data_end = 0u64;
    let mut tensors = Vec::with_capacity(tensor_count.min(1 << 16) as usize);
    for _ in 0..tensor_count {
        let name = reader.string()?;
        let dims = reader.u32()?;
        if dims > 8 {
            return Err(Invalid(format!(
                "corrupt header: tensor '{name}' has {dims} dimensions"
            )));
        }
        let mut elements = 1u64;
        let mut shape = Vec::with_capacity(dims as usize);
        for _ in 0..dims {
            let dim = if reader.wide {
                reader.u64()?
            } else {
                u64::from(reader.u32()?)
            };
            shape.push(dim);
            elements = elements
                .checked_mul(dim)
                .ok_or_else(|| Invalid(format!("corrupt header: tensor '{name}' is too large")))?;
        }
        let ty = reader.u32()?;
        let offset = reader.u64()?;
        parameters = parameters.saturating_add(elements);
        if dims >= 2 {
            *matrix_elements.entry(ty).or_default() += elements;
        }
        if let Some((_, block, bytes)) = tensor_type(ty) {
            let end = offset.saturating_add(elements / block * bytes);
            data_end = data_end.max(end);
        }
        tensors.push((name, shape));
    }
    let alignment = match metadata.get("general.alignment") {
        Some(Value::Unsigned(a)) if a.is_power_of_two() => *a,
        _ => 32,
    };
    let data_start = reader.position.div_ceil(alignment) * alignment;
    let needed = data_start.saturating_add(data_end);
    if needed > size {
        return Err(Invalid(format!(
            "truncated: the tensors end at byte {needed} but the file has {size} bytes (an interrupted copy or download?)"
        )));
    }
    Ok(Header {
        metadata,
        parameters,
        matrix_elements,
        tensors,
    })
}
