//! A company's actions, declared in config: name, description, JSON-schema parameters and
//! the HTTP call that performs them. Arguments are checked against the schema before any
//! call leaves; secrets come from the environment (`${VAR}` in URLs and headers), never from
//! the config file or the model.
//!
//! URL templates take `{param}` for an argument (percent-encoded); the remaining arguments
//! travel as the JSON body (POST, PUT, PATCH) or as the query string (GET, DELETE).
//!
//! The model cannot steer a call beyond its declaration: a path argument that is empty, `.`
//! or `..` (a dot segment once a URL parser reads it) is refused, every other one is
//! percent-encoded whole; object schemas are closed (`additionalProperties: false` unless the
//! config says otherwise), so no argument the schema does not declare reaches the query or
//! body; `{param}` may only stand in the path or query, never the scheme or host; and a call,
//! redirects included, only reaches the hosts of its URL template or its `allowed_hosts`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::SupportError;

/// One action the agent may take.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// Name the model calls it by (letters, digits, `_`, `-`).
    pub name: String,
    /// What it does and when to use it: the model reads this.
    pub description: String,
    /// JSON schema of the arguments (an object schema).
    #[serde(default = "empty_object")]
    pub parameters: Value,
    /// Changes something for the customer (cancel, refund, modify): hearth executes it only
    /// after the customer has explicitly confirmed it in the conversation.
    #[serde(default)]
    pub consequential: bool,
    /// How to perform it.
    pub http: HttpCall,
}

fn empty_object() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// An HTTP request template.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    /// GET, POST, PUT, PATCH or DELETE.
    #[serde(default = "get")]
    pub method: String,
    /// URL with `${ENV_VAR}` and `{argument}` placeholders.
    pub url: String,
    /// Header name → value template (`${ENV_VAR}` placeholders, e.g. `Bearer ${SHOP_TOKEN}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "ten")]
    pub timeout_seconds: u64,
    /// Hosts (`name` or `name:port`) this call may reach, redirects included. Empty: only the
    /// URL template's own host.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl HttpCall {
    /// The request for `url` (already expanded) with this call's method, timeout and
    /// headers (their `${VAR}`s expanded).
    pub fn request(
        &self,
        client: &reqwest::Client,
        vars: &Variables,
        url: &str,
    ) -> Result<(reqwest::Method, reqwest::RequestBuilder), String> {
        let method = reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|e| e.to_string())?;
        let mut request = client
            .request(method.clone(), url)
            .timeout(Duration::from_secs(self.timeout_seconds));
        for (header, value) in &self.headers {
            request = request.header(header, vars.expand(value)?);
        }
        Ok((method, request))
    }
}

fn get() -> String {
    "GET".into()
}

fn ten() -> u64 {
    10
}

/// Values for `${NAME}` placeholders: these first, then the process environment.
#[derive(Debug, Clone, Default)]
pub struct Variables(pub HashMap<String, String>);

impl Variables {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    /// `template` with every `${NAME}` replaced; a missing variable is an error naming it.
    pub fn expand(&self, template: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("unclosed '${{' in '{template}'"))?;
            let name = &rest[start + 2..start + end];
            out.push_str(
                &self
                    .get(name)
                    .ok_or_else(|| format!("environment variable {name} is not set"))?,
            );
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Why a tool call produced no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool '{0}'")]
    Unknown(String),
    /// The arguments do not match the tool's schema; nothing was sent.
    #[error("invalid arguments for {tool}: {message}")]
    InvalidArguments { tool: String, message: String },
    /// The service answered with an error (its words, e.g. `Error: order not found`).
    #[error("{0}")]
    Refused(String),
    /// The service could not be reached or answered garbage.
    #[error("{tool} unavailable: {message}")]
    Unavailable { tool: String, message: String },
}

struct Tool {
    spec: ToolSpec,
    validator: jsonschema::Validator,
    /// `{argument}` names in the URL template.
    path_params: Vec<String>,
    /// `host:port` values this call may reach.
    allowed: Vec<String>,
    /// A client whose redirects stay within `allowed`.
    client: reqwest::Client,
}

/// The company's tools, checked and ready to call.
pub struct ToolBox {
    tools: Vec<Tool>,
    vars: Variables,
}

/// `host:port` of a URL (the scheme's default port when none is written).
fn host_port(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    Some(format!("{host}:{}", url.port_or_known_default()?))
}

/// `name` or `name:port` from config, as `host:port` (`default_port` when none is written).
fn allowed_entry(entry: &str, default_port: u16) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://{}/", entry.trim())).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    if url.path() != "/" || url.username() != "" || url.query().is_some() {
        return None;
    }
    Some(format!("{host}:{}", url.port().unwrap_or(default_port)))
}

/// Closes every object schema that does not say otherwise (`additionalProperties: false`),
/// through `properties` and `items`; schemas under combinators are left as written.
fn close_schema(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let is_object =
        obj.get("type") == Some(&Value::String("object".into())) || obj.contains_key("properties");
    if is_object
        && !obj.contains_key("additionalProperties")
        && !obj.contains_key("patternProperties")
    {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(close_schema);
    }
    match obj.get_mut("items") {
        Some(Value::Array(items)) => items.iter_mut().for_each(close_schema),
        Some(items) => close_schema(items),
        None => {}
    }
}

/// The text a path argument stands for, or why it cannot stand in a path.
fn path_value(value: Option<Value>) -> Result<String, String> {
    let text = match value {
        Some(Value::String(s)) => s,
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        Some(_) => return Err("must be a string or a number".into()),
        None => return Err("is required".into()),
    };
    if text.is_empty() || text == "." || text == ".." {
        return Err(format!("'{text}' cannot stand for a path segment"));
    }
    Ok(text)
}

fn path_params(url: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = url;
    while let Some(start) = rest.find('{') {
        let is_var = start > 0 && rest.as_bytes()[start - 1] == b'$';
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        if !is_var {
            names.push(rest[start + 1..start + end].to_string());
        }
        rest = &rest[start + end + 1..];
    }
    names
}

impl ToolBox {
    /// Checks every tool: unique well-formed names, a compilable object schema, URL
    /// arguments declared and required, a known method, every `${VAR}` set.
    pub fn new(specs: Vec<ToolSpec>, vars: Variables) -> Result<ToolBox, SupportError> {
        let mut tools = Vec::new();
        for spec in specs {
            let bad =
                |message: String| SupportError::invalid(&format!("tools.{}", spec.name), message);
            if spec.name.is_empty()
                || !spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(bad("a tool name is letters, digits, '_' and '-'".into()));
            }
            if tools.iter().any(|t: &Tool| t.spec.name == spec.name) {
                return Err(bad("declared twice".into()));
            }
            if spec.parameters.get("type") != Some(&Value::String("object".into())) {
                return Err(bad("parameters must be an object schema".into()));
            }
            let mut spec = spec;
            close_schema(&mut spec.parameters);
            let bad =
                |message: String| SupportError::invalid(&format!("tools.{}", spec.name), message);
            let validator = jsonschema::validator_for(&spec.parameters)
                .map_err(|e| bad(format!("parameters: {e}")))?;
            let method = spec.http.method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                return Err(bad(format!("unknown HTTP method '{}'", spec.http.method)));
            }
            let params = path_params(&spec.http.url);
            let required: Vec<&str> = spec.parameters["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if let Some(p) = params.iter().find(|p| !required.contains(&p.as_str())) {
                return Err(bad(format!(
                    "the URL uses {{{p}}}, which is not a required parameter"
                )));
            }
            let mut probe = vars.expand(&spec.http.url).map_err(bad)?;
            for (i, p) in params.iter().enumerate() {
                probe = probe.replace(&format!("{{{p}}}"), &format!("hearth-argument-{i}"));
            }
            let url = reqwest::Url::parse(&probe).map_err(|e| bad(format!("url: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("url: only http and https URLs can be called".into()));
            }
            let own = host_port(&url).ok_or_else(|| bad("url: no host".into()))?;
            if own.contains("hearth-argument-")
                || url.username().contains("hearth-argument-")
                || url
                    .password()
                    .is_some_and(|p| p.contains("hearth-argument-"))
            {
                return Err(bad(
                    "url: an {argument} may stand in the path or query, not the host".into(),
                ));
            }
            let default_port = url.port_or_known_default().unwrap_or(80);
            let mut allowed = vec![own];
            for entry in &spec.http.allowed_hosts {
                allowed.push(allowed_entry(entry, default_port).ok_or_else(|| {
                    bad(format!(
                        "http.allowed_hosts: '{entry}' is not a host or host:port"
                    ))
                })?);
            }
            for value in spec.http.headers.values() {
                vars.expand(value).map_err(bad)?;
            }
            let hosts = allowed.clone();
            let redirects = reqwest::redirect::Policy::custom(move |attempt| {
                let within = host_port(attempt.url()).is_some_and(|h| hosts.contains(&h));
                if attempt.previous().len() >= 5 || !within {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            });
            let client = reqwest::Client::builder()
                .redirect(redirects)
                .build()
                .map_err(|e| bad(format!("http client: {e}")))?;
            tools.push(Tool {
                spec,
                validator,
                path_params: params,
                allowed,
                client,
            });
        }
        Ok(ToolBox { tools, vars })
    }

    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().map(|t| &t.spec)
    }

    pub fn spec(&self, name: &str) -> Option<&ToolSpec> {
        self.tools
            .iter()
            .find(|t| t.spec.name == name)
            .map(|t| &t.spec)
    }

    fn tool(&self, name: &str) -> Result<&Tool, ToolError> {
        self.tools
            .iter()
            .find(|t| t.spec.name == name)
            .ok_or_else(|| ToolError::Unknown(name.to_string()))
    }

    /// Checks `args` against the tool's schema.
    pub fn validate(&self, name: &str, args: &Value) -> Result<(), ToolError> {
        let tool = self.tool(name)?;
        tool.validator.validate(args).map_err(|e| {
            let at = e.instance_path().to_string();
            ToolError::InvalidArguments {
                tool: name.to_string(),
                message: if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                },
            }
        })
    }

    /// Validates and performs one call. A 2xx answer is the result (JSON, or the text as a
    /// JSON string); any other status is the service's refusal, in its own words.
    pub async fn call(&self, name: &str, args: &Value) -> Result<Value, ToolError> {
        self.validate(name, args)?;
        let tool = self.tool(name)?;
        let unavailable = |message: String| ToolError::Unavailable {
            tool: name.to_string(),
            message,
        };
        let mut rest: Map<String, Value> = args.as_object().cloned().unwrap_or_default();
        let mut url = self.vars.expand(&tool.spec.http.url).map_err(unavailable)?;
        for p in &tool.path_params {
            let value = path_value(rest.remove(p)).map_err(|why| ToolError::InvalidArguments {
                tool: name.to_string(),
                message: format!("/{p}: {why}"),
            })?;
            url = url.replace(
                &format!("{{{p}}}"),
                &utf8_percent_encode(&value, NON_ALPHANUMERIC).to_string(),
            );
        }
        let parsed = reqwest::Url::parse(&url).map_err(|e| unavailable(e.to_string()))?;
        if !host_port(&parsed).is_some_and(|h| tool.allowed.contains(&h)) {
            return Err(unavailable(format!(
                "{} is not among the tool's allowed hosts",
                parsed.host_str().unwrap_or("")
            )));
        }
        let (method, mut request) = tool
            .spec
            .http
            .request(&tool.client, &self.vars, &url)
            .map_err(unavailable)?;
        if matches!(method, reqwest::Method::GET | reqwest::Method::DELETE) {
            let query: Vec<(String, String)> = rest
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect();
            request = request.query(&query);
        } else {
            request = request.json(&Value::Object(rest));
        }
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(unavailable(format!(
                "HTTP {status}: a redirect away from the tool's allowed hosts was not followed"
            )));
        }
        let text = response
            .text()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            let message = value
                .get("error")
                .and_then(|e| e.get("message").or(Some(e)))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}: {value}"));
            Err(ToolError::Refused(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(url: &str, parameters: Value) -> ToolSpec {
        ToolSpec {
            name: "get_order".into(),
            description: "Look up an order".into(),
            parameters,
            consequential: false,
            http: HttpCall {
                method: "GET".into(),
                url: url.into(),
                headers: BTreeMap::new(),
                timeout_seconds: 5,
                allowed_hosts: Vec::new(),
            },
        }
    }

    fn order_schema() -> Value {
        json!({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})
    }

    #[test]
    fn variables_expand_from_the_map_then_fail_by_name() {
        let vars = Variables(HashMap::from([("SHOP".into(), "http://h".into())]));
        assert_eq!(vars.expand("${SHOP}/a/{id}").unwrap(), "http://h/a/{id}");
        let err = vars.expand("${HEARTH_SURELY_UNSET_VAR}").unwrap_err();
        assert!(err.contains("HEARTH_SURELY_UNSET_VAR"), "{err}");
        assert_eq!(
            path_params("${SHOP}/orders/{order_id}/x/{n}"),
            ["order_id", "n"]
        );
    }

    #[test]
    fn tool_config_errors_name_the_tool_and_the_problem() {
        let vars = Variables(HashMap::from([("SHOP".into(), "http://h".into())]));
        let undeclared = spec("${SHOP}/orders/{id}", order_schema());
        let err = ToolBox::new(vec![undeclared], vars.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("tools.get_order") && err.contains("{id}"),
            "{err}"
        );
        let unset = spec("${NOT_SET_ANYWHERE_42}/orders/{order_id}", order_schema());
        let err = ToolBox::new(vec![unset], vars.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("NOT_SET_ANYWHERE_42"), "{err}");
        let twice = spec("${SHOP}/orders/{order_id}", order_schema());
        let err = ToolBox::new(vec![twice.clone(), twice], vars)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("declared twice"), "{err}");
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let vars = Variables(HashMap::from([("SHOP".into(), "http://h".into())]));
        let tools = ToolBox::new(
            vec![spec("${SHOP}/orders/{order_id}", order_schema())],
            vars,
        )
        .unwrap();
        tools
            .validate("get_order", &json!({"order_id": "#W1"}))
            .unwrap();
        let err = tools
            .validate("get_order", &json!({"order_id": 7}))
            .unwrap_err();
        assert!(err.to_string().contains("/order_id"), "{err}");
        let err = tools.validate("get_order", &json!({})).unwrap_err();
        assert!(err.to_string().contains("order_id"), "{err}");
        assert_eq!(
            tools.validate("nope", &json!({})).unwrap_err(),
            ToolError::Unknown("nope".into())
        );
    }
}
