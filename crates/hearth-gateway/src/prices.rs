//! Token prices: a shipped table of common proprietary models' list prices, overridable in
//! `[gateway.prices]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    /// What `prompt` input and `completion` output tokens cost, in USD.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        (prompt as f64 * self.input + completion as f64 * self.output) / 1e6
    }
}

/// When the shipped list prices were taken from the vendors' price pages. Prices change:
/// override them in `[gateway.prices]`; reports print this date beside every saving.
pub const SHIPPED_PRICES_AS_OF: &str = "2025-10";

/// The shipped list prices (standard tier, text, no batch or cache discounts).
const SHIPPED: &[(&str, f64, f64)] = &[
    ("gpt-5", 1.25, 10.00),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5-nano", 0.05, 0.40),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("o3", 2.00, 8.00),
    ("o4-mini", 1.10, 4.40),
    ("claude-opus-4-1", 15.00, 75.00),
    ("claude-sonnet-4-5", 3.00, 15.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-haiku-4-5", 1.00, 5.00),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("gemini-2.5-pro", 1.25, 10.00),
    ("gemini-2.5-flash", 0.30, 2.50),
    ("gemini-2.5-flash-lite", 0.10, 0.40),
];

/// The shipped table with the config's entries on top.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
    overridden: Vec<String>,
}

impl PriceTable {
    pub fn new(overrides: &BTreeMap<String, Price>) -> Self {
        let mut prices: BTreeMap<String, Price> = SHIPPED
            .iter()
            .map(|&(name, input, output)| (name.to_owned(), Price { input, output }))
            .collect();
        let mut overridden = Vec::new();
        for (name, price) in overrides {
            prices.insert(name.clone(), *price);
            overridden.push(name.clone());
        }
        PriceTable { prices, overridden }
    }

    pub fn get(&self, name: &str) -> Option<Price> {
        self.prices.get(name).copied()
    }

    /// Where a price came from, for reports.
    pub fn source(&self, name: &str) -> String {
        if self.overridden.iter().any(|n| n == name) {
            "hearth.toml [gateway.prices]".into()
        } else {
            format!("vendor list price as of {SHIPPED_PRICES_AS_OF}")
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.prices.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_per_million_tokens_and_config_overrides_the_table() {
        let table = PriceTable::new(&BTreeMap::new());
        let gpt4o = table.get("gpt-4o").unwrap();
        assert!((gpt4o.cost(1_000_000, 0) - 2.5).abs() < 1e-9);
        assert!((gpt4o.cost(1000, 500) - (0.0025 + 0.005)).abs() < 1e-12);
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "gpt-4o".to_owned(),
            Price {
                input: 1.0,
                output: 2.0,
            },
        );
        let table = PriceTable::new(&overrides);
        assert_eq!(table.get("gpt-4o").unwrap().output, 2.0);
        assert!(table.source("gpt-4o").contains("hearth.toml"));
        assert!(table.source("gpt-4o-mini").contains(SHIPPED_PRICES_AS_OF));
    }
}
