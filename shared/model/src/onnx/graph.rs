//! A small builder for ONNX graphs: it hands out unique value names, keeps nodes in the
//! order they are added (which is already topological, as every input exists before the
//! node that reads it), and turns f32/i64 data into initializers.
//!
//! The architecture modules describe a forward pass with it one operator at a time; they
//! never touch the protobuf types directly except through the helpers here.

use gradients_proto::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The ONNX element type of `f32` tensors.
pub const FLOAT: i32 = DataType::Float as i32;
/// The ONNX element type of `i64` tensors.
pub const INT64: i32 = DataType::Int64 as i32;

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy)]
pub enum Dim {
    /// Known only at run time; the name lets runtimes tell equal dimensions apart.
    Symbolic(&'static str),
    Fixed(i64),
}

/// The nodes and initializers of one graph under construction.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Prefixes generated names, so a runtime error names the layer it happened in.
    scope: String,
    next_id: usize,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the prefix of the names generated from now on (e.g. `layers.3`).
    pub fn set_scope(&mut self, scope: impl Into<String>) {
        self.scope = scope.into();
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        if self.scope.is_empty() {
            format!("{hint}_{}", self.next_id)
        } else {
            format!("{}/{hint}_{}", self.scope, self.next_id)
        }
    }

    /// Adds a node writing the given outputs.
    pub fn node(&mut self, op_type: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<AttributeProto>) {
        let name = outputs.first().map_or_else(|| self.fresh(op_type), |o| format!("{o}/{op_type}"));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.iter().map(|s| (*s).to_owned()).collect(),
            name: Some(name),
            op_type: Some(op_type.to_owned()),
            attribute: attributes,
            ..Default::default()
        });
    }

    /// Adds a node with one output and returns that output's generated name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let out = self.fresh(op_type);
        self.node(op_type, inputs, &[&out], attributes);
        out
    }

    /// Adds a node with `n` outputs (e.g. `Split`) and returns their generated names.
    pub fn op_n(&mut self, op_type: &str, inputs: &[&str], n: usize, attributes: Vec<AttributeProto>) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(op_type)).collect();
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.node(op_type, inputs, &refs, attributes);
        outs
    }

    /// Adds an f32 initializer under `name` (stored as little-endian `raw_data`).
    pub fn float_initializer(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len(), "{name}");
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, dims, FLOAT, raw);
        name.to_owned()
    }

    /// An i64 constant (shapes, axes, indices); `dims` empty makes a scalar.
    pub fn const_i64(&mut self, dims: &[usize], values: &[i64]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let name = self.fresh("const");
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(&name, dims, INT64, raw);
        name
    }

    /// A 1-D i64 constant, the form `Reshape`, `Unsqueeze` and `Expand` take their shapes in.
    pub fn ints(&mut self, values: &[i64]) -> String {
        self.const_i64(&[values.len()], values)
    }

    /// A scalar f32 constant, broadcast by element-wise ops.
    pub fn scalar(&mut self, value: f32) -> String {
        let name = self.fresh("const");
        self.push_initializer(&name, &[], FLOAT, value.to_le_bytes().to_vec());
        name
    }

    fn push_initializer(&mut self, name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type),
            name: Some(name.to_owned()),
            raw_data: Some(raw),
            ..Default::default()
        });
    }

    /// The finished graph.
    pub fn finish(self, name: &str, inputs: Vec<ValueInfoProto>, outputs: Vec<ValueInfoProto>) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: Some(name.to_owned()),
            initializer: self.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }
    }

    // Shorthands for the operators every architecture uses.

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }

    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.op("Mul", &[a, b], vec![])
    }

    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.op("MatMul", &[a, b], vec![])
    }

    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let shape = self.ints(shape);
        self.op("Reshape", &[x, &shape], vec![])
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![attr_ints("perm", perm)])
    }

    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let axes = self.ints(axes);
        self.op("Unsqueeze", &[x, &axes], vec![])
    }

    /// Rows of `table` picked by the i64 `indices` (embedding lookup).
    pub fn gather(&mut self, table: &str, indices: &str) -> String {
        self.op("Gather", &[table, indices], vec![attr_int("axis", 0)])
    }
}

pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// The declaration of a tensor-typed graph input or output.
pub fn tensor_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match *d {
                Dim::Symbolic(p) => tensor_shape_proto::dimension::Value::DimParam(p.to_owned()),
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(v),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
