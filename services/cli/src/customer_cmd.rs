//! `gradients customer keygen`: a customer's ed25519 key. Every `gradients task ...`
//! request is signed with it (`--key`, or `intake.customer_key_file`); the customer id
//! printed here is what intake derives from it, and what the operator puts in the NATS
//! configuration (`CUSTOMER_ID`) and, for a closed market, the public key in
//! `intake.customer_keys`.

use std::path::PathBuf;
use std::process::ExitCode;

use gradients_intake::customer::CustomerKey;
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum CustomerCommand {
    /// Make a new ed25519 key for a customer and print its id and public key.
    Keygen {
        /// Where to write the key (never overwritten; readable by its owner only).
        #[arg(long, default_value = "customer.key")]
        out: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a customer command.
pub fn run(command: CustomerCommand) -> anyhow::Result<ExitCode> {
    match command {
        CustomerCommand::Keygen { out, json } => {
            let key = CustomerKey::generate();
            key.save(&out)?;
            let public_key = hex::encode(key.public_key());
            if json {
                println!("{}", json!({ "customer_id": key.id(), "public_key": public_key, "key_file": out }));
            } else {
                println!("customer id  {}\npublic key   {public_key}\nkey file     {}", key.id(), out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
