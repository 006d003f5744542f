//! What Hugging Face's `apply_chat_template` gives a chat template beyond minijinja: Python's
//! `json.dumps` as `tojson`, Python's way of printing values (`None`, `True`, `{'a': 1}`),
//! `strftime_now`, and lists in a `namespace` that `append` and `pop` change in place.
//!
//! Checked against Python's jinja2 by the conformance suite (tests/chat-templates).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use minijinja::value::{from_args, ArgType, Enumerator, Kwargs, Object, ObjectRepr, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, Value};

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// Installs the Python-compatible pieces into `env`. `clock` is the Unix time `strftime_now`
/// reads (0: the system clock).
pub(crate) fn install(env: &mut Environment<'static>, clock: Arc<AtomicI64>) {
    env.set_unknown_method_callback(|state, value, method, args| {
        match minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args) {
            Err(e) if e.kind() == ErrorKind::UnknownMethod => {
                if value.kind() == ValueKind::Seq
                    && matches!(method, "append" | "pop" | "extend" | "insert" | "remove")
                {
                    Err(invalid(format!(
                        "list.{method}() changes a list in place; hearth supports it on the lists \
                         of a namespace() only"
                    )))
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    });
    env.set_formatter(|out: &mut Output, _state: &mut State, value: &Value| {
        if value.is_undefined() {
            return Ok(());
        }
        match value.as_str() {
            Some(text) => out.write_str(text),
            None => out.write_str(&py_str(value)),
        }
        .map_err(|_| Error::new(ErrorKind::WriteFailure, "could not write the output"))
    });
    env.add_filter("tojson", tojson);
    env.add_filter("string", |value: Value| -> Value {
        match value.as_str() {
            Some(_) => value,
            None => Value::from(py_str(&value)),
        }
    });
    // Python's None is not iterable (minijinja iterates it as empty).
    env.add_test("iterable", |value: Value| {
        !is_none(&value) && value.try_iter().is_ok()
    });
    env.add_test("none", |value: Value| is_none(&value));
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> { Err(invalid(message)) },
    );
    env.add_function("strftime_now", move |format: String| {
        let at = match clock.load(Ordering::Relaxed) {
            0 => hearth_types::clock::unix_now() as i64,
            fixed => fixed,
        };
        strftime(&format, at)
    });
    env.add_function("namespace", namespace);
}

/// `namespace(...)`, whose list values can be changed in place (`ns.items.append(x)`), as
/// templates written for Python do.
fn namespace(args: minijinja::value::Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut given: Vec<(Value, Value)> = Vec::new();
    for arg in args.iter() {
        if arg.kind() != ValueKind::Map {
            return Err(invalid("namespace() takes a dict or keyword arguments"));
        }
        let items = pairs(arg)?;
        given.extend(items);
    }
    for key in kwargs.args() {
        given.push((Value::from(key), kwargs.get::<Value>(key)?));
    }
    // namespace() keeps its names sorted, so the order given does not matter.
    let defaults: std::collections::BTreeMap<String, Value> = given
        .into_iter()
        .map(|(key, value)| {
            let value = if value.kind() == ValueKind::Seq {
                PyList::from_value(&value)
            } else {
                value
            };
            (key.to_string(), value)
        })
        .collect();
    let defaults = Value::from(defaults);
    let defaults = <minijinja::value::ValueOrKwargs as ArgType>::from_value(Some(&defaults))?;
    minijinja::functions::namespace(Some(defaults))
}

/// Python's `None` where a template may loop over it: `tools` when no tools are declared.
/// minijinja's none iterates as an empty list; Python's raises, and templates written for
/// Python (Hermes' tool_use template) rely on a refusal there.
#[derive(Debug)]
struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("None")
    }
}

/// A none value that, as Python's, cannot be iterated.
pub(crate) fn none() -> Value {
    Value::from_object(PyNone)
}

fn is_none(value: &Value) -> bool {
    value.is_none() || value.downcast_object_ref::<PyNone>().is_some()
}

/// A map's keys and values, in order.
fn pairs(map: &Value) -> Result<Vec<(Value, Value)>, Error> {
    map.try_iter()?
        .map(|key| {
            let item = map.get_item(&key)?;
            Ok((key, item))
        })
        .collect()
}

/// A Python list: a sequence that `append`, `pop`, `extend`, `insert`, `remove` and `clear`
/// change in place.
#[derive(Debug, Default)]
struct PyList(Mutex<Vec<Value>>);

impl PyList {
    fn from_value(value: &Value) -> Value {
        let items = value
            .try_iter()
            .map(|iter| iter.collect())
            .unwrap_or_default();
        Value::from_object(PyList(Mutex::new(items)))
    }

    fn items(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Object for PyList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.items();
        let index = i64::try_from(key.clone()).ok()?;
        let index = if index < 0 {
            items.len() as i64 + index
        } else {
            index
        };
        usize::try_from(index)
            .ok()
            .and_then(|i| items.get(i).cloned())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.items().clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.items().len())
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.items().is_empty()
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let mut items = self.items();
        match method {
            "append" => {
                let (item,): (Value,) = from_args(args)?;
                items.push(item);
                Ok(Value::from(()))
            }
            "extend" => {
                let (more,): (Value,) = from_args(args)?;
                items.extend(more.try_iter()?);
                Ok(Value::from(()))
            }
            "insert" => {
                let (at, item): (i64, Value) = from_args(args)?;
                let len = items.len() as i64;
                let at = if at < 0 {
                    (len + at).max(0)
                } else {
                    at.min(len)
                };
                items.insert(at as usize, item);
                Ok(Value::from(()))
            }
            "pop" => {
                let (at,): (Option<i64>,) = from_args(args)?;
                let len = items.len() as i64;
                let at = at.unwrap_or(-1);
                let at = if at < 0 { len + at } else { at };
                if at < 0 || at >= len {
                    return Err(invalid("pop index out of range"));
                }
                Ok(items.remove(at as usize))
            }
            "remove" => {
                let (item,): (Value,) = from_args(args)?;
                match items.iter().position(|x| *x == item) {
                    Some(at) => {
                        items.remove(at);
                        Ok(Value::from(()))
                    }
                    None => Err(invalid("list.remove(x): x not in list")),
                }
            }
            "clear" => {
                items.clear();
                Ok(Value::from(()))
            }
            "index" => {
                let (item,): (Value,) = from_args(args)?;
                items
                    .iter()
                    .position(|x| *x == item)
                    .map(Value::from)
                    .ok_or_else(|| invalid("list.index(x): x not in list"))
            }
            "count" => {
                let (item,): (Value,) = from_args(args)?;
                Ok(Value::from(items.iter().filter(|x| **x == item).count()))
            }
            "copy" => Ok(Value::from(items.clone())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

// ---- printing values as Python does -------------------------------------------------------

/// `str(value)` in Python: what `{{ value }}` prints.
pub(crate) fn py_str(value: &Value) -> String {
    match value.as_str() {
        Some(text) => text.to_owned(),
        None => py_repr(value),
    }
}

/// `repr(value)` in Python.
pub(crate) fn py_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    out
}

fn write_repr(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&py_number(value)),
        ValueKind::String => write_str_repr(value.as_str().unwrap_or(""), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(&item, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(pairs) = pairs(value) {
                for (i, (key, item)) in pairs.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(&key, out);
                    out.push_str(": ");
                    write_repr(&item, out);
                }
            }
            out.push('}');
        }
        _ if is_none(value) => out.push_str("None"),
        _ => out.push_str(&value.to_string()),
    }
}

fn write_str_repr(text: &str, out: &mut String) {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn py_number(value: &Value) -> String {
    if let Ok(int) = i128::try_from(value.clone()) {
        if value.as_i64().is_some() || !is_float(value) {
            return int.to_string();
        }
    }
    match f64::try_from(value.clone()) {
        Ok(float) => py_float(float),
        Err(_) => value.to_string(),
    }
}

fn is_float(value: &Value) -> bool {
    // minijinja keeps floats and integers apart; a float prints with a point or an exponent.
    let shown = value.to_string();
    shown.contains(['.', 'e', 'E', 'i', 'N'])
}

/// `repr(float)` in Python: the shortest text that reads back the same, in positional form
/// for exponents -4 to 15 and in scientific form (`1e-05`, `1.5e+16`) otherwise.
pub(crate) fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sci = format!("{x:e}"); // shortest round-trip digits, e.g. "1.5e-7"
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    if (-4..16).contains(&exponent) {
        let shown = format!("{x}");
        if shown.contains('.') {
            shown
        } else {
            format!("{shown}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

// ---- tojson: Python's json.dumps ----------------------------------------------------------

struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// `tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, as
/// transformers defines it: `json.dumps` with those arguments, no HTML escaping.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(text) => text.to_owned(),
            None => " ".repeat(usize::try_from(v).map_err(|_| invalid("indent must be a count"))?),
        }),
    };
    let (default_item, default_key) = if indent.is_some() {
        (",", ": ")
    } else {
        (", ", ": ")
    };
    let (item_separator, key_separator) = match kwargs.get::<Option<Value>>("separators")? {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] => (
                    item.as_str().unwrap_or(default_item).to_owned(),
                    key.as_str().unwrap_or(default_key).to_owned(),
                ),
                _ => return Err(invalid("separators must be an (item, key) pair")),
            }
        }
        _ => (default_item.to_owned(), default_key.to_owned()),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let style = JsonStyle {
        ensure_ascii,
        indent,
        item_separator,
        key_separator,
        sort_keys,
    };
    let mut out = String::new();
    write_json(&value, &style, 0, &mut out)?;
    Ok(Value::from(out))
}

fn write_json(
    value: &Value,
    style: &JsonStyle,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => {
            return Err(invalid("Object of type Undefined is not JSON serializable"))
        }
        _ if is_none(value) => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&py_number(value)),
        ValueKind::String => write_json_str(value.as_str().unwrap_or(""), style.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_separator);
                }
                newline(style, depth + 1, out);
                write_json(item, style, depth + 1, out)?;
            }
            newline(style, depth, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut pairs: Vec<(String, Value)> = pairs(value)?
                .into_iter()
                .map(|(key, item)| (json_key(&key), item))
                .collect();
            if style.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if pairs.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_separator);
                }
                newline(style, depth + 1, out);
                write_json_str(key, style.ensure_ascii, out);
                out.push_str(&style.key_separator);
                write_json(item, style, depth + 1, out)?;
            }
            newline(style, depth, out);
            out.push('}');
        }
        kind => {
            return Err(invalid(format!(
                "Object of type {kind} is not JSON serializable"
            )))
        }
    }
    Ok(())
}

fn json_key(key: &Value) -> String {
    match key.kind() {
        ValueKind::String => key.as_str().unwrap_or("").to_owned(),
        ValueKind::Bool => (if key.is_true() { "true" } else { "false" }).to_owned(),
        ValueKind::None => "null".to_owned(),
        _ => py_str(key),
    }
}

fn newline(style: &JsonStyle, depth: usize, out: &mut String) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    }
}

fn write_json_str(text: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---- strftime_now -------------------------------------------------------------------------

/// Python's `datetime.now().strftime(format)` for the directives templates use, in UTC.
pub(crate) fn strftime(format: &str, unix: i64) -> Result<String, Error> {
    use time::OffsetDateTime;
    let at = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let month = hearth_types::clock::month_name(at.month() as u8);
    let weekday = at.weekday().to_string();
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(directive) = chars.next() else {
            out.push('%');
            break;
        };
        match directive {
            'Y' => out.push_str(&at.year().to_string()),
            'y' => out.push_str(&format!("{:02}", at.year().rem_euclid(100))),
            'm' => out.push_str(&format!("{:02}", at.month() as u8)),
            'd' => out.push_str(&format!("{:02}", at.day())),
            'e' => out.push_str(&format!("{:>2}", at.day())),
            'j' => out.push_str(&format!("{:03}", at.ordinal())),
            'B' => out.push_str(&month),
            'b' | 'h' => out.push_str(&month[..3]),
            'A' => out.push_str(&weekday),
            'a' => out.push_str(&weekday[..3]),
            'w' => out.push_str(&at.weekday().number_days_from_sunday().to_string()),
            'u' => out.push_str(&at.weekday().number_from_monday().to_string()),
            'H' => out.push_str(&format!("{:02}", at.hour())),
            'I' => out.push_str(&format!("{:02}", (at.hour() + 11) % 12 + 1)),
            'p' => out.push_str(if at.hour() < 12 { "AM" } else { "PM" }),
            'M' => out.push_str(&format!("{:02}", at.minute())),
            'S' => out.push_str(&format!("{:02}", at.second())),
            'F' => out.push_str(&format!(
                "{}-{:02}-{:02}",
                at.year(),
                at.month() as u8,
                at.day()
            )),
            'Z' | 'z' => {} // a naive datetime, as datetime.now() is
            '%' => out.push('%'),
            other => {
                return Err(invalid(format!(
                    "strftime_now: the directive %{other} is not supported"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        for (x, shown) in [
            (1.0, "1.0"),
            (2.5, "2.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
        ] {
            assert_eq!(py_float(x), shown, "{x}");
        }
    }

    #[test]
    fn strftime_formats_like_python() {
        // 2026-07-26 12:00:00 UTC, a Sunday.
        let at = 1_785_067_200;
        assert_eq!(
            strftime("%d %b %Y|%Y-%m-%d|%A %a %B|%H:%M:%S %I%p|%j|%%", at).unwrap(),
            "26 Jul 2026|2026-07-26|Sunday Sun July|12:00:00 12PM|207|%"
        );
        assert!(strftime("%Q", at).is_err());
    }
}
