//! The demo company's back office: an online store (users, orders, products as JSON files)
//! with every tool of its API, as `shared/data/retail/TOOLS.md` specifies them. hearth-server
//! serves it over HTTP (`hearth demo-shop`); the agent reaches it only through the tool
//! config any company would write, and the evaluation harness scores conversations by the
//! store's final state.
//!
//! Every tool returns the changed or requested record, or an error string starting with
//! `Error:`; a call that fails changes nothing (all checks run before the first write).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::SupportError;

/// A tool's failure, as the store words it (`Error: …`).
pub type ToolFailure = String;

/// The store's three tables.
#[derive(Debug, Clone, PartialEq)]
pub struct RetailStore {
    users: Map<String, Value>,
    orders: Map<String, Value>,
    products: Map<String, Value>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn fail<T>(message: impl std::fmt::Display) -> Result<T, ToolFailure> {
    Err(format!("Error: {message}"))
}

fn string<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolFailure> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => fail(format!("'{name}' must be a string")),
        None => fail(format!("missing argument '{name}'")),
    }
}

fn strings(args: &Value, name: &str) -> Result<Vec<String>, ToolFailure> {
    match args.get(name) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => fail(format!("'{name}' must be a list of strings")),
            })
            .collect(),
        Some(_) => fail(format!("'{name}' must be a list of strings")),
        None => fail(format!("missing argument '{name}'")),
    }
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn address(args: &Value) -> Result<Value, ToolFailure> {
    let mut a = Map::new();
    for field in ["address1", "address2", "city", "state", "country", "zip"] {
        a.insert(
            field.into(),
            Value::String(string(args, field)?.to_string()),
        );
    }
    Ok(Value::Object(a))
}

/// JSON with object keys sorted at every level: equal data, equal text.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical_map(m: &Map<String, Value>, out: &mut String) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_unstable();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        write_canonical(&m[k], out);
    }
    out.push('}');
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(m) => write_canonical_map(m, out),
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn read_table(dir: &Path, name: &str) -> Result<Map<String, Value>, SupportError> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| SupportError::io(&path, e))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(SupportError::BadFile {
            file: path,
            message: "expected a JSON object keyed by id".into(),
        }),
        Err(e) => Err(SupportError::BadFile {
            file: path,
            message: format!("line {}: {e}", e.line()),
        }),
    }
}

impl RetailStore {
    /// Reads users.json, orders.json and products.json from `dir`.
    pub fn load(dir: &Path) -> Result<RetailStore, SupportError> {
        Ok(RetailStore {
            users: read_table(dir, "users.json")?,
            orders: read_table(dir, "orders.json")?,
            products: read_table(dir, "products.json")?,
        })
    }

    /// SHA-256 of the canonical JSON of the three tables: two stores with equal data have
    /// equal hashes.
    pub fn state_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for table in [&self.users, &self.orders, &self.products] {
            let mut text = String::new();
            write_canonical_map(table, &mut text);
            hasher.update(text.as_bytes());
            hasher.update(b"\n");
        }
        hex::encode(hasher.finalize())
    }

    /// Runs one tool.
    pub fn call(&mut self, tool: &str, args: &Value) -> Result<Value, ToolFailure> {
        let args = if args.is_null() { &json!({}) } else { args };
        match tool {
            "find_user_id_by_email" => {
                let email = string(args, "email")?.to_lowercase();
                self.users
                    .iter()
                    .find(|(_, u)| {
                        u["email"].as_str().map(str::to_lowercase) == Some(email.clone())
                    })
                    .map(|(id, _)| Value::String(id.clone()))
                    .map_or_else(|| fail("user not found"), Ok)
            }
            "find_user_id_by_name_zip" => {
                let first = string(args, "first_name")?.to_lowercase();
                let last = string(args, "last_name")?.to_lowercase();
                let zip = string(args, "zip")?;
                self.users
                    .iter()
                    .find(|(_, u)| {
                        u["name"]["first_name"].as_str().map(str::to_lowercase)
                            == Some(first.clone())
                            && u["name"]["last_name"].as_str().map(str::to_lowercase)
                                == Some(last.clone())
                            && u["address"]["zip"].as_str() == Some(zip)
                    })
                    .map(|(id, _)| Value::String(id.clone()))
                    .map_or_else(|| fail("user not found"), Ok)
            }
            "get_user_details" => self.user(string(args, "user_id")?).cloned(),
            "get_order_details" => self.order(string(args, "order_id")?).cloned(),
            "get_product_details" => {
                let id = string(args, "product_id")?;
                self.products
                    .get(id)
                    .cloned()
                    .map_or_else(|| fail("product not found"), Ok)
            }
            "list_all_product_types" => {
                let names: BTreeMap<String, Value> = self
                    .products
                    .values()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap_or_default().to_string(),
                            p["product_id"].clone(),
                        )
                    })
                    .collect();
                Ok(Value::Object(names.into_iter().collect()))
            }
            "calculate" => calculate(string(args, "expression")?).map(|v| json!(v)),
            "think" => Ok(Value::String(String::new())),
            "cancel_pending_order" => self.cancel_pending_order(args),
            "modify_pending_order_address" => {
                let id = string(args, "order_id")?;
                let address = address(args)?;
                self.pending(id)?;
                let order = self.orders.get_mut(id).expect("checked");
                order["address"] = address;
                Ok(order.clone())
            }
            "modify_user_address" => {
                let id = string(args, "user_id")?;
                let address = address(args)?;
                self.user(id)?;
                let user = self.users.get_mut(id).expect("checked");
                user["address"] = address;
                Ok(user.clone())
            }
            "modify_pending_order_payment" => self.modify_pending_order_payment(args),
            "modify_pending_order_items" => self.modify_pending_order_items(args),
            "return_delivered_order_items" => self.return_delivered_order_items(args),
            "exchange_delivered_order_items" => self.exchange_delivered_order_items(args),
            other => fail(format!("unknown tool '{other}'")),
        }
    }

    fn user(&self, id: &str) -> Result<&Value, ToolFailure> {
        self.users
            .get(id)
            .map_or_else(|| fail("user not found"), Ok)
    }

    fn order(&self, id: &str) -> Result<&Value, ToolFailure> {
        self.orders
            .get(id)
            .map_or_else(|| fail("order not found"), Ok)
    }

    fn pending(&self, id: &str) -> Result<&Value, ToolFailure> {
        let order = self.order(id)?;
        if order["status"] != "pending" {
            return fail("non-pending order cannot be modified");
        }
        Ok(order)
    }

    fn delivered(&self, id: &str) -> Result<&Value, ToolFailure> {
        let order = self.order(id)?;
        if order["status"] != "delivered" {
            return fail("non-delivered order cannot be returned or exchanged");
        }
        Ok(order)
    }

    /// The order user's payment method `method`.
    fn payment_method(&self, order: &Value, method: &str) -> Result<&Value, ToolFailure> {
        let user = order["user_id"].as_str().unwrap_or_default();
        self.user(user)?["payment_methods"]
            .get(method)
            .map_or_else(|| fail("payment method not found"), Ok)
    }

    fn gift_card_balance(&self, order: &Value, method: &str) -> Option<f64> {
        let m = self.payment_method(order, method).ok()?;
        (m["source"] == "gift_card").then(|| number(&m["balance"]))
    }

    /// Adds `amount` to a gift card's balance (no-op for other methods).
    fn move_balance(&mut self, user: &str, method: &str, amount: f64) {
        if let Some(m) = self
            .users
            .get_mut(user)
            .and_then(|u| u["payment_methods"].get_mut(method))
        {
            if m["source"] == "gift_card" {
                m["balance"] = json!(round2(number(&m["balance"]) + amount));
            }
        }
    }

    fn cancel_pending_order(&mut self, args: &Value) -> Result<Value, ToolFailure> {
        let id = string(args, "order_id")?;
        let reason = string(args, "reason")?;
        let order = self.order(id)?;
        if order["status"] != "pending" {
            return fail("non-pending order cannot be cancelled");
        }
        if !["no longer needed", "ordered by mistake"].contains(&reason) {
            return fail("invalid reason");
        }
        let user = order["user_id"].as_str().unwrap_or_default().to_string();
        let refunds: Vec<Value> = order["payment_history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["transaction_type"] == "payment")
            .map(|p| {
                json!({
                    "transaction_type": "refund",
                    "amount": p["amount"],
                    "payment_method_id": p["payment_method_id"],
                })
            })
            .collect();
        for r in &refunds {
            let method = r["payment_method_id"].as_str().unwrap_or_default();
            self.move_balance(&user, method, number(&r["amount"]));
        }
        let order = self.orders.get_mut(id).expect("checked");
        if let Some(history) = order["payment_history"].as_array_mut() {
            history.extend(refunds);
        }
        order["status"] = json!("cancelled");
        order["cancel_reason"] = json!(reason);
        Ok(order.clone())
    }

    fn modify_pending_order_payment(&mut self, args: &Value) -> Result<Value, ToolFailure> {
        let id = string(args, "order_id")?;
        let method = string(args, "payment_method_id")?;
        let order = self.pending(id)?;
        self.payment_method(order, method)?;
        let history = order["payment_history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if history.len() != 1 || history[0]["transaction_type"] != "payment" {
            return fail("there should be exactly one payment for a pending order");
        }
        let old = history[0]["payment_method_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if old == method {
            return fail("the new payment method should be different from the current one");
        }
        let amount = number(&history[0]["amount"]);
        if let Some(balance) = self.gift_card_balance(order, method) {
            if balance < amount {
                return fail("insufficient gift card balance to pay for the order");
            }
        }
        let user = order["user_id"].as_str().unwrap_or_default().to_string();
        self.move_balance(&user, method, -amount);
        self.move_balance(&user, &old, amount);
        let order = self.orders.get_mut(id).expect("checked");
        let history = order["payment_history"].as_array_mut().expect("checked");
        history.push(
            json!({"transaction_type": "payment", "amount": amount, "payment_method_id": method}),
        );
        history.push(
            json!({"transaction_type": "refund", "amount": amount, "payment_method_id": old}),
        );
        Ok(order.clone())
    }

    /// Checks that every id in `item_ids` is in the order (counting duplicates).
    fn check_items(order: &Value, item_ids: &[String]) -> Result<(), ToolFailure> {
        let items = order["items"].as_array().cloned().unwrap_or_default();
        for id in item_ids {
            let wanted = item_ids.iter().filter(|i| *i == id).count();
            let present = items.iter().filter(|i| i["item_id"] == id.as_str()).count();
            if wanted > present {
                return fail(format!("item {id} not found"));
            }
        }
        Ok(())
    }

    /// The price difference (new minus old) of swapping `item_ids` for `new_item_ids`, each
    /// new item an available variant of the old one's product.
    fn price_difference(
        &self,
        order: &Value,
        item_ids: &[String],
        new_item_ids: &[String],
    ) -> Result<f64, ToolFailure> {
        if item_ids.len() != new_item_ids.len() {
            return fail("the number of items to be exchanged should match");
        }
        Self::check_items(order, item_ids)?;
        let items = order["items"].as_array().cloned().unwrap_or_default();
        let mut difference = 0.0;
        for (old, new) in item_ids.iter().zip(new_item_ids) {
            let item = items
                .iter()
                .find(|i| i["item_id"] == old.as_str())
                .expect("checked");
            let product = item["product_id"].as_str().unwrap_or_default();
            let variant = self
                .products
                .get(product)
                .and_then(|p| p["variants"].get(new.as_str()))
                .filter(|v| v["available"] == true);
            let Some(variant) = variant else {
                return fail(format!("new item {new} not found or available"));
            };
            difference += number(&variant["price"]) - number(&item["price"]);
        }
        Ok(round2(difference))
    }

    fn modify_pending_order_items(&mut self, args: &Value) -> Result<Value, ToolFailure> {
        let id = string(args, "order_id")?;
        let item_ids = strings(args, "item_ids")?;
        let new_item_ids = strings(args, "new_item_ids")?;
        let method = string(args, "payment_method_id")?;
        let order = self.pending(id)?;
        let difference = self.price_difference(order, &item_ids, &new_item_ids)?;
        self.payment_method(order, method)?;
        if let Some(balance) = self.gift_card_balance(order, method) {
            if balance < difference {
                return fail("insufficient gift card balance to pay for the new item");
            }
        }
        let user = order["user_id"].as_str().unwrap_or_default().to_string();
        let mut replacements = Vec::new();
        for (old, new) in item_ids.iter().zip(&new_item_ids) {
            let item = order["items"]
                .as_array()
                .and_then(|items| items.iter().find(|i| i["item_id"] == old.as_str()))
                .expect("checked");
            let variant = &self.products[item["product_id"].as_str().unwrap_or_default()]
                ["variants"][new.as_str()];
            replacements.push((old.clone(), new.clone(), variant.clone()));
        }
        self.move_balance(&user, method, -difference);
        let order = self.orders.get_mut(id).expect("checked");
        order["payment_history"]
            .as_array_mut()
            .expect("checked")
            .push(json!({
                "transaction_type": if difference > 0.0 { "payment" } else { "refund" },
                "amount": difference.abs(),
                "payment_method_id": method,
            }));
        let items = order["items"].as_array_mut().expect("checked");
        for (old, new, variant) in replacements {
            // The first item still carrying the old id: duplicates are replaced one by one.
            if let Some(item) = items.iter_mut().find(|i| i["item_id"] == old.as_str()) {
                item["item_id"] = json!(new);
                item["price"] = variant["price"].clone();
                item["options"] = variant["options"].clone();
            }
        }
        order["status"] = json!("pending (item modified)");
        Ok(order.clone())
    }

    fn return_delivered_order_items(&mut self, args: &Value) -> Result<Value, ToolFailure> {
        let id = string(args, "order_id")?;
        let mut item_ids = strings(args, "item_ids")?;
        let method = string(args, "payment_method_id")?;
        let order = self.delivered(id)?;
        let m = self.payment_method(order, method)?;
        let original = &order["payment_history"][0]["payment_method_id"];
        if m["source"] != "gift_card" && original != method {
            return fail(
                "payment method should be either the original payment method or a gift card",
            );
        }
        Self::check_items(order, &item_ids)?;
        item_ids.sort();
        let order = self.orders.get_mut(id).expect("checked");
        order["status"] = json!("return requested");
        order["return_items"] = json!(item_ids);
        order["return_payment_method_id"] = json!(method);
        Ok(order.clone())
    }

    fn exchange_delivered_order_items(&mut self, args: &Value) -> Result<Value, ToolFailure> {
        let id = string(args, "order_id")?;
        let mut item_ids = strings(args, "item_ids")?;
        let mut new_item_ids = strings(args, "new_item_ids")?;
        let method = string(args, "payment_method_id")?;
        let order = self.delivered(id)?;
        let difference = self.price_difference(order, &item_ids, &new_item_ids)?;
        self.payment_method(order, method)?;
        if let Some(balance) = self.gift_card_balance(order, method) {
            if balance < difference {
                return fail("insufficient gift card balance to pay for the price difference");
            }
        }
        item_ids.sort();
        new_item_ids.sort();
        let order = self.orders.get_mut(id).expect("checked");
        order["status"] = json!("exchange requested");
        order["exchange_items"] = json!(item_ids);
        order["exchange_new_items"] = json!(new_item_ids);
        order["exchange_payment_method_id"] = json!(method);
        order["exchange_price_difference"] = json!(difference);
        Ok(order.clone())
    }
}

/// Evaluates `+ - * / ( )` over decimal numbers, rounded to 2 decimals.
pub fn calculate(expression: &str) -> Result<f64, ToolFailure> {
    if !expression
        .chars()
        .all(|c| c.is_ascii_digit() || "+-*/(). ".contains(c))
    {
        return fail("invalid characters in expression");
    }
    let tokens: Vec<char> = expression.chars().filter(|c| *c != ' ').collect();
    let mut parser = Calc { tokens, at: 0 };
    let value = parser.sum()?;
    if parser.at != parser.tokens.len() {
        return fail("malformed expression");
    }
    if !value.is_finite() {
        return fail("division by zero");
    }
    Ok(round2(value))
}

struct Calc {
    tokens: Vec<char>,
    at: usize,
}

impl Calc {
    fn peek(&self) -> Option<char> {
        self.tokens.get(self.at).copied()
    }

    fn sum(&mut self) -> Result<f64, ToolFailure> {
        let mut value = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            let rhs = self.product()?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        Ok(value)
    }

    fn product(&mut self) -> Result<f64, ToolFailure> {
        let mut value = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.at += 1;
            let rhs = self.unary()?;
            value = if op == '*' { value * rhs } else { value / rhs };
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<f64, ToolFailure> {
        match self.peek() {
            Some('-') => {
                self.at += 1;
                Ok(-self.unary()?)
            }
            Some('+') => {
                self.at += 1;
                self.unary()
            }
            Some('(') => {
                self.at += 1;
                let value = self.sum()?;
                if self.peek() != Some(')') {
                    return fail("unbalanced parentheses");
                }
                self.at += 1;
                Ok(value)
            }
            _ => {
                let start = self.at;
                while matches!(self.peek(), Some(c) if c.is_ascii_digit() || c == '.') {
                    self.at += 1;
                }
                let text: String = self.tokens[start..self.at].iter().collect();
                text.parse()
                    .map_or_else(|_| fail("malformed expression"), Ok)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calculate_follows_arithmetic_and_refuses_anything_else() {
        assert_eq!(calculate("2 + 3 * (4 - 1) / 2").unwrap(), 6.5);
        assert_eq!(calculate("-1.5 * 3").unwrap(), -4.5);
        assert_eq!(calculate("10 / 3").unwrap(), 3.33);
        assert!(calculate("2 ** 3").is_err());
        assert!(calculate("import os").unwrap_err().starts_with("Error:"));
        assert!(calculate("1 / 0").is_err());
        assert!(calculate("(1 + 2").is_err());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"y":1,"x":2}],"c":3}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":3,"d":[{"x":2,"y":1}]},"b":1}"#
        );
    }
}
