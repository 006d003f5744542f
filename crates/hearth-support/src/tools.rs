//! A company's actions, declared in config: name, description, JSON-schema parameters and
//! the HTTP call that performs them. Arguments are checked against the schema before any
//! call leaves; secrets come from the environment (`${VAR}` in URLs and headers), never from
//! the config file or the model.
//!
//! URL templates take `{param}` for an argument (percent-encoded); the remaining arguments
//! travel as the JSON body (POST, PUT, PATCH) or as the query string (GET, DELETE).

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
}

/// The company's tools, checked and ready to call.
pub struct ToolBox {
    tools: Vec<Tool>,
    client: reqwest::Client,
    vars: Variables,
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
            vars.expand(&spec.http.url).map_err(bad)?;
            for value in spec.http.headers.values() {
                vars.expand(value).map_err(bad)?;
            }
            tools.push(Tool {
                spec,
                validator,
                path_params: params,
            });
        }
        Ok(ToolBox {
            tools,
            client: reqwest::Client::new(),
            vars,
        })
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
            let value = match rest.remove(p) {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            url = url.replace(
                &format!("{{{p}}}"),
                &utf8_percent_encode(&value, NON_ALPHANUMERIC).to_string(),
            );
        }
        let (method, mut request) = tool
            .spec
            .http
            .request(&self.client, &self.vars, &url)
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
