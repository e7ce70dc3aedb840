//! Stored enum labels: typed columns whose database value is a lower-case label, and the
//! typed error a label this build does not know becomes.
//!
//! Each label enum is a sea-orm value type over a string column (`TEXT`/`varchar` on both
//! backends, so rows written before the columns were typed read back unchanged). Reading a
//! row whose label is unknown fails the query with `DbErr::TryIntoErr` carrying an
//! [`UnknownLabel`] as its source, never a default: [`unknown_label`] finds it again.

use sea_orm::DbErr;

/// A stored label that names no value of its enum: the row was written by a newer build,
/// by hand, or is corrupt. Nothing may be inferred from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored {kind} label {label:?} is not one of {known:?}")]
pub struct UnknownLabel {
    /// The enum the column holds (`DispatchTaskState`).
    pub kind: &'static str,
    /// The label as stored.
    pub label: String,
    /// The labels this build knows.
    pub known: &'static [&'static str],
}

/// The [`UnknownLabel`] behind `error`, if reading a stored label is what failed.
pub fn unknown_label(error: &DbErr) -> Option<&UnknownLabel> {
    match error {
        DbErr::TryIntoErr { source, .. } => source.downcast_ref::<UnknownLabel>(),
        _ => None,
    }
}

/// Defines a stored label enum: each variant with its label, `label()`, `from_label()`
/// (an [`UnknownLabel`] error otherwise), `ALL`, `Display`, and the sea-orm value type
/// over a string column.
macro_rules! stored_label {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, sea_orm::DeriveValueType)]
        // Written with `Display`, read with `FromStr`: both are the label below.
        #[sea_orm(value_type = "String")]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// Every stored label, in declaration order.
            pub const LABELS: &'static [&'static str] = &[$($label),+];

            /// The label stored in the database.
            pub fn label(&self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }

            /// The value a stored label names; an unknown label is an error, never a default.
            pub fn from_label(label: &str) -> Result<Self, $crate::label::UnknownLabel> {
                match label {
                    $($label => Ok(Self::$variant),)+
                    _ => Err($crate::label::UnknownLabel {
                        kind: stringify!($name),
                        label: label.to_owned(),
                        known: Self::LABELS,
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::label::UnknownLabel;

            fn from_str(label: &str) -> Result<Self, Self::Err> {
                Self::from_label(label)
            }
        }
    };
}

pub(crate) use stored_label;

/// A wire enum value that cannot be stored: unspecified, or unknown to this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value} is unspecified or unknown: it is never stored")]
pub struct Unspecified {
    /// The wire enum.
    pub kind: &'static str,
    /// Its numeric value as received.
    pub value: i32,
}
