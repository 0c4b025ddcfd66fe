//! The OpenTelemetry resource every signal carries: built as the trace
//! pipeline builds its own (the SDK's detectors, so `OTEL_RESOURCE_ATTRIBUTES`
//! and the `telemetry.sdk.*` attributes are there too), then `service.name`,
//! `service.version` and `deployment.environment.name` from the
//! configuration.

use opentelemetry::{KeyValue, Value};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue as ProtoKeyValue, any_value},
    resource::v1::Resource,
};

use crate::Config;

/// The SDK resource of `config`, as the trace pipeline builds it.
pub(crate) fn sdk_resource(config: &Config) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service.clone())
        .with_attributes([
            KeyValue::new("service.version", config.version.clone()),
            KeyValue::new("deployment.environment.name", config.environment.as_str()),
        ])
        .build()
}

/// The resource of `config` as an OTLP message, attributes sorted by key.
pub(crate) fn proto_resource(config: &Config) -> Resource {
    let resource = sdk_resource(config);
    let mut attributes: Vec<ProtoKeyValue> = resource
        .iter()
        .map(|(k, v)| ProtoKeyValue {
            key: k.as_str().to_owned(),
            value: Some(any_value(v)),
            ..ProtoKeyValue::default()
        })
        .collect();
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    Resource {
        attributes,
        ..Resource::default()
    }
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

fn any_value(v: &Value) -> AnyValue {
    use opentelemetry::Array;
    let value = match v {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::I64(i) => any_value::Value::IntValue(*i),
        Value::F64(f) => any_value::Value::DoubleValue(*f),
        Value::String(s) => any_value::Value::StringValue(s.as_str().to_owned()),
        Value::Array(a) => {
            let values = match a {
                Array::Bool(v) => v.iter().map(|b| Value::Bool(*b)).collect::<Vec<_>>(),
                Array::I64(v) => v.iter().map(|i| Value::I64(*i)).collect(),
                Array::F64(v) => v.iter().map(|f| Value::F64(*f)).collect(),
                Array::String(v) => v.iter().map(|s| Value::String(s.clone())).collect(),
                _ => Vec::new(),
            };
            any_value::Value::ArrayValue(ArrayValue {
                values: values.iter().map(any_value).collect(),
            })
        }
        other => any_value::Value::StringValue(other.to_string()),
    };
    AnyValue { value: Some(value) }
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
