//! Integers as JSON writes them: `2` and `2.0` are the same integer in JSON (and in JSON
//! Schema's `"type": "integer"`), and clients that compute a count in floating point send the
//! second. serde takes only the first into an integer field; these take both, and still
//! refuse a fraction or a value out of the field's range.
//!
//! `#[serde(deserialize_with = "whole::int")]` on an integer field,
//! `#[serde(default, deserialize_with = "whole::opt")]` on an `Option` of one,
//! `#[serde(deserialize_with = "whole::list")]` and `whole::lists` on token lists.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// An integer type a whole number converts into.
pub trait Integer: Sized + TryFrom<i64> + TryFrom<u64> {}

impl<T: TryFrom<i64> + TryFrom<u64>> Integer for T {}

struct Whole<T>(PhantomData<T>);

impl<T: Integer> Whole<T> {
    fn range<E: de::Error>(value: impl fmt::Display) -> E {
        E::custom(format!(
            "{value} is out of range for {}",
            std::any::type_name::<T>()
        ))
    }
}

impl<'de, T: Integer> Visitor<'de> for Whole<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| Self::range(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| Self::range(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // Every integer up to 2^53 is exact in an f64; past it a float no longer names one.
        const EXACT: f64 = 9_007_199_254_740_992.0;
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(E::invalid_type(de::Unexpected::Float(v), &self));
        }
        if v.abs() > EXACT {
            return Err(Self::range(v));
        }
        if v < 0.0 {
            self.visit_i64(v as i64)
        } else {
            self.visit_u64(v as u64)
        }
    }
}

/// An integer, written `2` or `2.0`.
pub fn int<'de, D: Deserializer<'de>, T: Integer>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(Whole(PhantomData))
}

/// An optional integer (`null` is `None`).
pub fn opt<'de, D: Deserializer<'de>, T: Integer>(d: D) -> Result<Option<T>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap<T: Integer>(#[serde(deserialize_with = "int")] T);
    Ok(Option::<Wrap<T>>::deserialize(d)?.map(|Wrap(v)| v))
}

/// A list of integers.
pub fn list<'de, D: Deserializer<'de>, T: Integer>(d: D) -> Result<Vec<T>, D::Error> {
    struct List<T>(PhantomData<T>);
    impl<'de, T: Integer> Visitor<'de> for List<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of integers")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            #[derive(Deserialize)]
            struct Wrap<T: Integer>(#[serde(deserialize_with = "int")] T);
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(Wrap(v)) = seq.next_element::<Wrap<T>>()? {
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(List(PhantomData))
}

/// A list of lists of integers.
pub fn lists<'de, D: Deserializer<'de>, T: Integer>(d: D) -> Result<Vec<Vec<T>>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap<T: Integer>(#[serde(deserialize_with = "list")] Vec<T>);
    Ok(Vec::<Wrap<T>>::deserialize(d)?
        .into_iter()
        .map(|Wrap(v)| v)
        .collect())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Counts {
        #[serde(deserialize_with = "super::int")]
        n: u32,
        #[serde(default, deserialize_with = "super::opt")]
        seed: Option<i64>,
        #[serde(default, deserialize_with = "super::lists")]
        tokens: Vec<Vec<u32>>,
    }

    fn parse(json: &str) -> Result<Counts, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_are_not() {
        let counts = parse(r#"{"n": 3.0, "seed": -2.0, "tokens": [[1, 2.0], [3]]}"#).unwrap();
        assert_eq!(
            counts,
            Counts {
                n: 3,
                seed: Some(-2),
                tokens: vec![vec![1, 2], vec![3]]
            }
        );
        assert_eq!(parse(r#"{"n": 3, "seed": null}"#).unwrap().seed, None);
        assert_eq!(parse(r#"{"n": 3}"#).unwrap().seed, None);
        for bad in [
            r#"{"n": 2.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": -1.0}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "3"}"#,
            r#"{"n": 1, "tokens": [[0.5]]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} was taken");
        }
    }
}
