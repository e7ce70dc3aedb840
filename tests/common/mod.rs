//! What the cross-service stories share: the testkit's sandbox (a private nats-server, a
//! folder, settings for every service), each service started in-process on a database of
//! its own, and the base model published where every party fetches it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gradients_bus::api::call;
use gradients_bus::Bus;
use gradients_config::Settings;
use gradients_proto::v1::{ListMinersRequest, ListMinersResponse};
use gradients_testkit::{eventually, Backend, Sandbox, Services};

/// Every service of one story, in this process, on one private server.
pub struct Market {
    pub sandbox: Sandbox,
    services: Services<String>,
}

impl Market {
    /// The sandbox (its settings changed by `tweak`), no service yet.
    pub async fn start(tweak: impl FnOnce(&mut Settings) + Send) -> Self {
        let sandbox = Sandbox::builder().client_name("e2e").settings(tweak).build().await;
        Self { sandbox, services: Services::new() }
    }

    /// The settings every service of the story starts from.
    pub fn settings(&self) -> &Settings {
        &self.sandbox.settings
    }

    /// The story's own connection.
    pub fn bus(&self) -> &Bus {
        &self.sandbox.bus
    }

    /// A path in the story's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.sandbox.path(name)
    }

    /// Intake on a database of its own.
    pub async fn intake(&mut self, backend: Backend) {
        let settings = self.sandbox.own_store(backend).await;
        self.services
            .spawn(|stop| async move { gradients_intake::run(settings, stop).await.map_err(|e| e.to_string()) });
    }

    /// Dispatch on a database of its own.
    pub async fn dispatch(&mut self, backend: Backend) {
        let settings = self.sandbox.own_store(backend).await;
        self.services
            .spawn(|stop| async move { gradients_dispatch::run(settings, stop).await.map_err(|e| e.to_string()) });
    }

    /// The ledger on a database of its own.
    pub async fn ledger(&mut self, backend: Backend) {
        let settings = self.sandbox.own_store(backend).await;
        self.services
            .spawn(|stop| async move { gradients_ledger::run(settings, stop).await.map_err(|e| e.to_string()) });
    }

    /// The evaluator (it keeps no database).
    pub fn evaluator(&mut self) {
        let settings = self.sandbox.settings.clone();
        self.services
            .spawn(|stop| async move { gradients_evaluator::run(settings, stop).await.map_err(|e| e.to_string()) });
    }

    /// A `gradients-trainer` miner with these settings.
    pub fn trainer(&mut self, settings: Settings) {
        self.services.spawn(|stop| async move {
            gradients_trainer::runtime::run(settings, stop).await.map_err(|e| e.to_string())
        });
    }

    /// The base model every story's tasks name: a fresh `tiny-1m` saved in the story's
    /// `models/` folder, where its trainers look. Returns that folder and the config.
    pub fn install_tiny_base_model(&self) -> (PathBuf, gradients_model::ModelConfig) {
        let models = self.path("models");
        let config = gradients_trainer::presets::config("tiny-1m").expect("the tiny-1m preset");
        gradients_trainer::checkpoint::save(
            &gradients_trainer::model::CausalLm::new(&config, tch::Device::Cpu, 1),
            &gradients_text::Tokenizer::byte_level(),
            &models.join("tiny-1m"),
        )
        .expect("save the base model");
        (models, config)
    }

    /// One trainer per strategy, each a miner with its own key and work folder, training on
    /// the CPU for at most `max_steps` optimizer steps from the models in `models`.
    pub fn trainers(&mut self, base: &Settings, models: &Path, strategies: &[&str], max_steps: u64) {
        for (i, strategy) in strategies.iter().enumerate() {
            let mut settings = base.clone();
            settings.trainer.key_file = self.path(&format!("miner-{i}.key"));
            settings.trainer.models_dir = models.to_owned();
            settings.trainer.work_dir = self.path(&format!("runs-{i}"));
            settings.trainer.strategy = (*strategy).into();
            settings.trainer.device = "cpu".into();
            settings.trainer.max_steps = max_steps;
            settings.trainer.submit_margin_ms = 2_000;
            settings.trainer.min_training_ms = 1_000;
            self.trainer(settings);
        }
    }

    /// Publishes the model folder `dir` as `name` in `gradients-models`, as an operator's
    /// `gradients model publish` does: intake refuses a task whose base model is not
    /// published, and the evaluator fetches it from there.
    pub async fn publish_base_model(&self, dir: &Path, name: &str) -> gradients_evaluator::models_store::ModelIndex {
        gradients_evaluator::models_store::publish(self.bus(), dir, name).await.expect("publish the base model")
    }

    /// Waits until dispatch lists `n` live miners.
    pub async fn wait_for_live_miners(&self, n: usize) {
        eventually(Duration::from_secs(30), &format!("{n} live miners"), || async {
            let answer: Result<ListMinersResponse, _> = call(
                &self.bus().client,
                gradients_bus::subjects::api::miners(gradients_bus::subjects::api::MINERS_LIST),
                &ListMinersRequest {},
                Duration::from_secs(2),
            )
            .await;
            let live = answer.map_err(|e| e.to_string())?.miners.len();
            if live == n {
                Ok(())
            } else {
                Err(format!("{live} live"))
            }
        })
        .await;
    }

    /// Stops every service gracefully.
    pub async fn stop(&mut self) {
        self.services.stop_all().await;
    }
}

/// Publishes the model folder `dir` as `name` in `gradients-models`, as an operator's
/// `gradients model publish` does (checked by the evaluator first): intake refuses a task
/// whose base model is not published. Declares the topology, so it may run before any
/// service has started. Suites without a model folder use
/// [`gradients_testkit::publish_base_model`].
pub async fn publish_base_model(bus: &gradients_bus::Bus, settings: &Settings, dir: &Path, name: &str) {
    gradients_bus::topology::declare(bus, &settings.nats).await.expect("declare the topology");
    gradients_evaluator::models_store::publish(bus, dir, name).await.expect("publish the base model");
}
