//! Reads an ONNX file back into the few facts the evaluator checks before running it:
//! versions, the input and output signature, the operators used and the parameter count.

use std::collections::BTreeSet;

use gradients_proto::onnx::{type_proto, GraphProto, ModelProto, ValueInfoProto};
use prost::Message;

use super::graph::FLOAT;
use super::ExportError;

/// What an ONNX model declares about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxSummary {
    pub ir_version: i64,
    /// The version of the default (`ai.onnx`) operator set.
    pub opset: i64,
    /// Graph inputs (initializers excluded) with their ONNX element type
    /// (`TensorProto.DataType`; 0 for a value that is not a tensor).
    pub inputs: Vec<(String, i32)>,
    pub outputs: Vec<(String, i32)>,
    /// Operator types of every node, subgraphs included.
    pub op_types: BTreeSet<String>,
    /// Elements of the f32 initializers named like Hugging Face parameters (see
    /// [`is_parameter_name`]); RoPE tables and constants are not counted.
    pub parameter_count: u64,
}

/// Summarises an encoded `ModelProto`.
pub fn inspect(bytes: &[u8]) -> Result<OnnxSummary, ExportError> {
    let model = ModelProto::decode(bytes).map_err(ExportError::Decode)?;
    let ir_version = model.ir_version.ok_or_else(|| ExportError::Invalid("no ir_version".into()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| ExportError::Invalid("no default (ai.onnx) opset import".into()))?;
    let graph = model.graph.as_ref().ok_or_else(|| ExportError::Invalid("no graph".into()))?;

    // Before IR 4 initializers were listed among the inputs too; they are not inputs a
    // caller feeds.
    let initializer_names: BTreeSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initializer_names.contains(i.name.as_deref().unwrap_or_default()))
        .map(signature)
        .collect();
    let outputs = graph.output.iter().map(signature).collect();

    let mut op_types = BTreeSet::new();
    collect_op_types(graph, &mut op_types);

    let parameter_count = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == Some(FLOAT) && is_parameter_name(t.name.as_deref().unwrap_or_default()))
        .map(|t| t.dims.iter().map(|&d| d.max(0) as u64).product::<u64>())
        .sum();

    Ok(OnnxSummary { ir_version, opset, inputs, outputs, op_types, parameter_count })
}

/// Whether `name` is shaped like a parameter of a supported architecture
/// ([`crate::ModelConfig::parameters`]): under `model.`, `lm_head.` or `transformer.`,
/// ending in `.weight` or `.bias`. The exporter names nothing else that way.
pub fn is_parameter_name(name: &str) -> bool {
    ["model.", "lm_head.", "transformer."].iter().any(|p| name.starts_with(p))
        && [".weight", ".bias"].iter().any(|s| name.ends_with(s))
}

fn signature(value: &ValueInfoProto) -> (String, i32) {
    let elem_type = match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t.elem_type.unwrap_or_default(),
        _ => 0,
    };
    (value.name.clone().unwrap_or_default(), elem_type)
}

fn collect_op_types(graph: &GraphProto, out: &mut BTreeSet<String>) {
    for node in &graph.node {
        if let Some(op) = &node.op_type {
            out.insert(op.clone());
        }
        for attribute in &node.attribute {
            for sub in attribute.g.iter().chain(&attribute.graphs) {
                collect_op_types(sub, out);
            }
        }
    }
}
