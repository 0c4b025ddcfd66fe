//! The OpenTelemetry resource every signal carries: `OTEL_RESOURCE_ATTRIBUTES`,
//! then `telemetry.sdk.*`, then `service.name`, `service.version` and
//! `deployment.environment.name` from the configuration, a later key
//! replacing an earlier one (the precedence the OpenTelemetry SDK applies).
//! Spans, metrics and log records all take it from here.

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue as ProtoKeyValue, any_value},
    resource::v1::Resource,
};

use crate::Config;

/// The resource of `config`, `OTEL_RESOURCE_ATTRIBUTES` read from the
/// process environment.
pub(crate) fn proto_resource(config: &Config) -> Resource {
    resource_from(config, |k| std::env::var(k).ok())
}

/// The resource of `config`, `OTEL_RESOURCE_ATTRIBUTES` read from `lookup`.
pub(crate) fn resource_from(config: &Config, lookup: impl Fn(&str) -> Option<String>) -> Resource {
    let mut attrs: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| {
        if let Some(slot) = attrs.iter_mut().find(|(key, _)| key == k) {
            slot.1 = v;
        } else {
            attrs.push((k.to_owned(), v));
        }
    };
    if let Some(raw) = lookup("OTEL_RESOURCE_ATTRIBUTES") {
        for (k, v) in parse_resource_attributes(&raw) {
            put(&k, v);
        }
    }
    put("telemetry.sdk.name", "glimpse_obs".to_owned());
    put("telemetry.sdk.language", "rust".to_owned());
    put(
        "telemetry.sdk.version",
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    put("service.name", config.service.clone());
    put("service.version", config.version.clone());
    put(
        "deployment.environment.name",
        config.environment.as_str().to_owned(),
    );
    Resource {
        attributes: attrs
            .into_iter()
            .map(|(k, v)| string_attribute(&k, &v))
            .collect(),
        ..Resource::default()
    }
}

/// `key1=value1,key2=value2` with percent-encoded values (W3C Baggage
/// octets, as the specification says); malformed members are skipped.
fn parse_resource_attributes(raw: &str) -> Vec<(String, String)> {
    raw.split(',')
        .filter_map(|member| {
            let (k, v) = member.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_owned(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A string attribute.
pub(crate) fn string_attribute(key: &str, value: &str) -> ProtoKeyValue {
    ProtoKeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..ProtoKeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_names_the_service_its_version_and_environment() {
        let config = Config::default()
            .service("payment")
            .version("1.2.3")
            .environment(crate::Environment::Staging);
        let r = proto_resource(&config);
        let get = |k: &str| {
            r.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        let s = |v: &str| Some(any_value::Value::StringValue(v.to_owned()));
        assert_eq!(get("service.name"), s("payment"));
        assert_eq!(get("service.version"), s("1.2.3"));
        assert_eq!(get("deployment.environment.name"), s("staging"));
        assert_eq!(get("telemetry.sdk.language"), s("rust"));
    }
}
