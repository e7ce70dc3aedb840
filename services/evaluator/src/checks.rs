//! What a submitted ONNX file must be before anything runs it: parsed within limits, only
//! the default domain and an allow-list of operators, no control flow, no external data,
//! the market's input/output signature, and exactly the base model's parameters (names,
//! types, shapes), with at least one of them changed.
//!
//! Facts come from walking the protobuf ([`ModelFacts::read`]); the comparison with the
//! base model ([`check_against_base`]) works on the facts of the base model's own export,
//! so "the same architecture" means the same initializers the exporter writes for it.

use std::collections::{BTreeMap, BTreeSet};

use gradients_proto::onnx::{tensor_shape_proto, type_proto, GraphProto, ModelProto, TensorProto, ValueInfoProto};
use gradients_proto::v1::ErrorCode;
use prost::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Refusal;

/// IR versions accepted (ONNX Runtime 1.31 reads up to 13; the exporter writes 10).
pub const IR_VERSIONS: std::ops::RangeInclusive<i64> = 7..=10;
/// Default-domain opset versions accepted (the exporter writes 17).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;
/// Element types of the inputs and the output (`TensorProto.DataType`).
const INT64: i32 = 7;
const FLOAT: i32 = 1;
/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;
/// Elements of non-parameter initializers (RoPE tables, shape constants) a submission may
/// hold beyond the base model's own: room for a constant or two, not for hidden weights.
const CONSTANT_SLACK_ELEMENTS: u64 = 4096;

/// Operators a causal LM of either architecture needs, and nothing that loops, branches,
/// allocates by a computed shape alone, or draws random numbers.
pub const ALLOWED_OPS: &[&str] = &[
    "Add",
    "And",
    "Cast",
    "Concat",
    "Constant",
    "Div",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Gather",
    "Gelu",
    "Gemm",
    "Greater",
    "GreaterOrEqual",
    "Identity",
    "LayerNormalization",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Operators refused with a word about why: they run subgraphs an unbounded number of times.
const CONTROL_FLOW: &[&str] = &["Loop", "If", "Scan", "SequenceMap"];

/// The structural limits a file is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_nodes: usize,
    pub max_initializer_bytes: u64,
    pub max_dimension: i64,
}

impl Limits {
    pub fn from_settings(settings: &gradients_config::EvaluatorSettings) -> Self {
        Self {
            max_nodes: settings.max_nodes,
            max_initializer_bytes: settings.max_initializer_bytes,
            max_dimension: settings.max_dimension,
        }
    }
}

/// What the checks see in a file (also what `gradients eval inspect` prints).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFacts {
    pub ir_version: i64,
    pub opset: i64,
    /// Operator set domains imported, the default one as "".
    pub domains: Vec<String>,
    pub inputs: Vec<Signature>,
    pub outputs: Vec<Signature>,
    pub node_count: usize,
    pub op_types: BTreeSet<String>,
    /// Parameters (initializers named like Hugging Face parameters): name -> (type, dims).
    pub parameters: BTreeMap<String, (i32, Vec<i64>)>,
    pub parameter_count: u64,
    /// Elements of every other initializer and `Constant` tensor.
    pub constant_elements: u64,
    /// Bytes all initializers and constants take, from their declared shapes.
    pub initializer_bytes: u64,
    /// sha256 over the parameters' names, shapes and values: equal means untouched.
    pub parameter_digest: String,
}

/// A graph input or output: name, element type, dimensions (`None`: symbolic).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signature {
    pub name: String,
    pub elem_type: i32,
    pub dims: Vec<Option<i64>>,
}

fn invalid(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal::invalid(code, message)
}

impl ModelFacts {
    /// Parses `bytes` and checks everything that needs no base model: versions, domains,
    /// operators, external data, limits. Every refusal names what it found.
    pub fn read(bytes: &[u8], limits: &Limits) -> Result<Self, Refusal> {
        let model = ModelProto::decode(bytes)
            .map_err(|e| invalid(ErrorCode::NotOnnx, format!("not an ONNX model (protobuf: {e})")))?;
        let graph = model.graph.as_ref().ok_or_else(|| invalid(ErrorCode::NotOnnx, "the model has no graph"))?;
        let ir_version = model.ir_version.unwrap_or_default();
        if !IR_VERSIONS.contains(&ir_version) {
            return Err(invalid(
                ErrorCode::OnnxLimitExceeded,
                format!("IR version {ir_version} is outside {IR_VERSIONS:?}"),
            ));
        }
        let mut domains = Vec::new();
        let mut opset = None;
        for import in &model.opset_import {
            let domain = import.domain.clone().unwrap_or_default();
            if !is_default_domain(&domain) {
                return Err(invalid(ErrorCode::CustomDomain, format!("imports the operator set domain {domain:?}")));
            }
            opset = import.version;
            domains.push(domain);
        }
        let opset = opset.ok_or_else(|| invalid(ErrorCode::NotOnnx, "no default (ai.onnx) opset import"))?;
        if !OPSETS.contains(&opset) {
            return Err(invalid(ErrorCode::OnnxLimitExceeded, format!("opset {opset} is outside {OPSETS:?}")));
        }
        if let Some(function) = model.functions.first() {
            return Err(invalid(
                ErrorCode::CustomDomain,
                format!("defines its own function {:?}", function.name.clone().unwrap_or_default()),
            ));
        }
        if !model.training_info.is_empty() {
            return Err(invalid(ErrorCode::ForbiddenOperator, "carries training graphs"));
        }

        let mut walk = Walk { limits, node_count: 0, op_types: BTreeSet::new() };
        walk.graph(graph)?;
        let mut facts = Self {
            ir_version,
            opset,
            domains,
            inputs: Vec::new(),
            outputs: graph.output.iter().map(signature).collect(),
            node_count: walk.node_count,
            op_types: walk.op_types,
            parameters: BTreeMap::new(),
            parameter_count: 0,
            constant_elements: 0,
            initializer_bytes: 0,
            parameter_digest: String::new(),
        };
        let initializer_names: BTreeSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
        facts.inputs = graph
            .input
            .iter()
            .filter(|i| !initializer_names.contains(i.name.as_deref().unwrap_or_default()))
            .map(signature)
            .collect();
        for value in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
            check_declared_dims(value, limits)?;
        }

        let mut digest = Sha256::new();
        let mut sorted: Vec<&TensorProto> = graph.initializer.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for tensor in sorted {
            let name = tensor.name.clone().unwrap_or_default();
            check_tensor(tensor, &name, limits)?;
            let elements = elements(&tensor.dims);
            facts.initializer_bytes = facts.initializer_bytes.saturating_add(elements.saturating_mul(4));
            if gradients_model::onnx::is_parameter_name(&name) {
                if facts
                    .parameters
                    .insert(name.clone(), (tensor.data_type.unwrap_or_default(), tensor.dims.clone()))
                    .is_some()
                {
                    return Err(invalid(ErrorCode::ArchitectureMismatch, format!("parameter {name} appears twice")));
                }
                facts.parameter_count = facts.parameter_count.saturating_add(elements);
                digest.update((name.len() as u64).to_le_bytes());
                digest.update(name.as_bytes());
                for d in &tensor.dims {
                    digest.update(d.to_le_bytes());
                }
                digest_values(&mut digest, tensor);
            } else {
                facts.constant_elements = facts.constant_elements.saturating_add(elements);
            }
        }
        let constants = constant_nodes(graph);
        for tensor in &constants {
            check_tensor(tensor, "a Constant node", limits)?;
            let elements = elements(&tensor.dims);
            facts.constant_elements = facts.constant_elements.saturating_add(elements);
            facts.initializer_bytes = facts.initializer_bytes.saturating_add(elements.saturating_mul(4));
        }
        if facts.initializer_bytes > limits.max_initializer_bytes {
            return Err(invalid(
                ErrorCode::OnnxLimitExceeded,
                format!(
                    "initializers take {} bytes, more than the limit of {}",
                    facts.initializer_bytes, limits.max_initializer_bytes
                ),
            ));
        }
        facts.parameter_digest = hex::encode(digest.finalize());
        Ok(facts)
    }

    /// The vocabulary the `logits` output declares, when it declares one.
    pub fn declared_vocab(&self) -> Option<i64> {
        self.outputs.iter().find(|o| o.name == "logits").and_then(|o| o.dims.last().copied().flatten())
    }
}

/// Checks a submission's facts against its base model's: the market's signature with the
/// base's vocabulary, the same parameters, nothing hidden in constants, and a change.
pub fn check_against_base(facts: &ModelFacts, base: &ModelFacts) -> Result<(), Refusal> {
    let names = |s: &[Signature]| s.iter().map(|v| (v.name.clone(), v.elem_type)).collect::<Vec<_>>();
    let wanted_inputs = [("input_ids".to_owned(), INT64), ("attention_mask".to_owned(), INT64)];
    let mut inputs = names(&facts.inputs);
    inputs.sort();
    let mut wanted = wanted_inputs.to_vec();
    wanted.sort();
    if inputs != wanted {
        return Err(invalid(
            ErrorCode::WrongModelSignature,
            format!("inputs are {inputs:?}; the market feeds exactly input_ids and attention_mask (int64)"),
        ));
    }
    let logits = match facts.outputs.as_slice() {
        [only] if only.name == "logits" && only.elem_type == FLOAT => only,
        _ => {
            return Err(invalid(
                ErrorCode::WrongModelSignature,
                format!("outputs are {:?}; the market reads one float output, logits", names(&facts.outputs)),
            ))
        }
    };
    if logits.dims.len() != 3 || logits.dims[2] != base.declared_vocab() {
        return Err(invalid(
            ErrorCode::WrongModelSignature,
            format!(
                "logits are declared {:?}; the base model's are [batch, sequence, {}]",
                logits.dims,
                base.declared_vocab().unwrap_or_default()
            ),
        ));
    }
    if facts.parameters != base.parameters {
        let missing = base.parameters.keys().find(|k| !facts.parameters.contains_key(*k));
        let extra = facts.parameters.keys().find(|k| !base.parameters.contains_key(*k));
        let reshaped = facts.parameters.iter().find(|(k, v)| base.parameters.get(*k).is_some_and(|b| b != *v));
        let detail = match (missing, extra, reshaped) {
            (Some(name), _, _) => format!("parameter {name} is missing"),
            (_, Some(name), _) => format!("parameter {name} is not in the base model"),
            (_, _, Some((name, (ty, dims)))) => {
                format!("parameter {name} is type {ty} {dims:?}, the base model's is {:?}", base.parameters[name])
            }
            _ => "the parameters differ".to_owned(),
        };
        return Err(invalid(
            ErrorCode::ArchitectureMismatch,
            format!("{detail}: {} parameters where the base model has {}", facts.parameter_count, base.parameter_count),
        ));
    }
    if facts.constant_elements > base.constant_elements + CONSTANT_SLACK_ELEMENTS {
        return Err(invalid(
            ErrorCode::ArchitectureMismatch,
            format!(
                "{} elements of constants beside the parameters, the base model has {}",
                facts.constant_elements, base.constant_elements
            ),
        ));
    }
    if facts.parameter_digest == base.parameter_digest {
        return Err(invalid(ErrorCode::NotAFineTune, "every parameter equals the base model's: not a fine-tune"));
    }
    Ok(())
}

fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// Counts nodes and checks operators, recursively.
struct Walk<'a> {
    limits: &'a Limits,
    node_count: usize,
    op_types: BTreeSet<String>,
}

impl Walk<'_> {
    fn graph(&mut self, graph: &GraphProto) -> Result<(), Refusal> {
        if !graph.sparse_initializer.is_empty() {
            return Err(invalid(ErrorCode::ForbiddenOperator, "sparse initializers are not accepted"));
        }
        for node in &graph.node {
            self.node_count += 1;
            if self.node_count > self.limits.max_nodes {
                return Err(invalid(
                    ErrorCode::OnnxLimitExceeded,
                    format!("more than {} nodes", self.limits.max_nodes),
                ));
            }
            let op = node.op_type.clone().unwrap_or_default();
            let domain = node.domain.clone().unwrap_or_default();
            if !is_default_domain(&domain) {
                return Err(invalid(ErrorCode::CustomDomain, format!("operator {op} of the custom domain {domain:?}")));
            }
            if CONTROL_FLOW.contains(&op.as_str()) {
                return Err(invalid(ErrorCode::ForbiddenOperator, format!("control flow ({op}) is not accepted")));
            }
            if !ALLOWED_OPS.contains(&op.as_str()) {
                return Err(invalid(ErrorCode::ForbiddenOperator, format!("operator {op:?} is not on the allow-list")));
            }
            if node.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty()) {
                return Err(invalid(ErrorCode::ForbiddenOperator, format!("operator {op} carries a subgraph")));
            }
            self.op_types.insert(op);
        }
        Ok(())
    }
}

fn constant_nodes(graph: &GraphProto) -> Vec<TensorProto> {
    graph.node.iter().flat_map(|n| n.attribute.iter()).filter_map(|a| a.t.clone()).collect()
}

fn signature(value: &ValueInfoProto) -> Signature {
    let (elem_type, dims) = match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => (
            t.elem_type.unwrap_or_default(),
            t.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => (0, Vec::new()),
    };
    Signature { name: value.name.clone().unwrap_or_default(), elem_type, dims }
}

fn check_declared_dims(value: &ValueInfoProto, limits: &Limits) -> Result<(), Refusal> {
    for dim in signature(value).dims.into_iter().flatten() {
        if !(0..=limits.max_dimension).contains(&dim) {
            return Err(invalid(
                ErrorCode::OnnxLimitExceeded,
                format!(
                    "{} declares a dimension of {dim} (limit {})",
                    value.name.clone().unwrap_or_default(),
                    limits.max_dimension
                ),
            ));
        }
    }
    Ok(())
}

fn check_tensor(tensor: &TensorProto, what: &str, limits: &Limits) -> Result<(), Refusal> {
    if tensor.data_location == Some(EXTERNAL) || !tensor.external_data.is_empty() {
        let location = tensor
            .external_data
            .iter()
            .find(|e| e.key.as_deref() == Some("location"))
            .and_then(|e| e.value.clone())
            .unwrap_or_default();
        return Err(invalid(
            ErrorCode::ExternalData,
            format!("{what} keeps its data outside the artifact ({location:?}); a submission is one file"),
        ));
    }
    if let Some(dim) = tensor.dims.iter().find(|d| !(0..=limits.max_dimension).contains(*d)) {
        return Err(invalid(
            ErrorCode::OnnxLimitExceeded,
            format!("{what} declares a dimension of {dim} (limit {})", limits.max_dimension),
        ));
    }
    Ok(())
}

fn elements(dims: &[i64]) -> u64 {
    dims.iter().fold(1u64, |n, &d| n.saturating_mul(d.max(0) as u64))
}

fn digest_values(digest: &mut Sha256, tensor: &TensorProto) {
    match &tensor.raw_data {
        Some(raw) if !raw.is_empty() => digest.update(raw),
        _ => {
            for v in &tensor.float_data {
                digest.update(v.to_le_bytes());
            }
        }
    }
}
