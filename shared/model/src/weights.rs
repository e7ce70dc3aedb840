//! Named f32 tensors: how a framework hands a model's parameters to the exporter.

use std::collections::BTreeMap;

use crate::config::ModelConfig;

/// One tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Parameters by canonical (HF) name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights(pub BTreeMap<String, Weight>);

/// Weights that do not match the configuration they are said to belong to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightError {
    #[error("parameter {name} is missing")]
    Missing { name: String },
    #[error("parameter {name} is not part of a {architecture} model of this configuration")]
    Unexpected { name: String, architecture: &'static str },
    #[error("parameter {name} has shape {found:?}, the configuration implies {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("parameter {name} holds {found} values for shape {shape:?}")]
    Length { name: String, shape: Vec<usize>, found: usize },
    #[error("parameter {name} holds a non-finite value")]
    NonFinite { name: String },
}

impl Weight {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { shape, data }
    }
}

impl Weights {
    /// The tensor under `name`; callers check first, so a miss is a bug in the caller.
    pub fn get(&self, name: &str) -> Result<&Weight, WeightError> {
        self.0.get(name).ok_or_else(|| WeightError::Missing { name: name.to_owned() })
    }

    /// Checks that exactly the configuration's parameters are here, with its shapes,
    /// consistent lengths and finite values.
    pub fn check(&self, config: &ModelConfig) -> Result<(), WeightError> {
        let expected = config.parameters();
        for spec in &expected {
            let weight = self.get(&spec.name)?;
            if weight.shape != spec.shape {
                return Err(WeightError::Shape {
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                    found: weight.shape.clone(),
                });
            }
            if weight.data.len() != weight.shape.iter().product::<usize>() {
                return Err(WeightError::Length {
                    name: spec.name.clone(),
                    shape: weight.shape.clone(),
                    found: weight.data.len(),
                });
            }
            if weight.data.iter().any(|v| !v.is_finite()) {
                return Err(WeightError::NonFinite { name: spec.name.clone() });
            }
        }
        if let Some(name) = self.0.keys().find(|name| !expected.iter().any(|s| &s.name == *name)) {
            return Err(WeightError::Unexpected { name: name.clone(), architecture: config.architecture() });
        }
        Ok(())
    }
}
