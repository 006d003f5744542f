//! The platform's side of the customer-service agent: where its artifacts live and which
//! models it uses by default.

use hearth_infer::registry::ModelKind;
use hearth_store::{ArtifactVersion, Artifacts};
use hearth_support::intents::{IntentModel, IntentProgress, IntentTrainOptions, LabelledText};
use hearth_support::SupportError;

use crate::Platform;

impl Platform {
    /// Published support artifacts of one kind (`$DATA_DIR/artifacts/support/KIND`).
    pub fn support_artifacts(&self, kind: &str) -> Artifacts {
        Artifacts::new(
            self.config()
                .data_dir
                .join("artifacts")
                .join("support")
                .join(kind),
        )
    }

    /// The support agent's embedding model: `asked`, else `[support] embedding_model`, else
    /// the first embedding model registered.
    pub fn support_embedding_model(&self, asked: Option<&str>) -> Result<String, SupportError> {
        if let Some(model) = asked.or(self.config().support.embedding_model.as_deref()) {
            return Ok(model.to_string());
        }
        self.gateway()
            .models()?
            .into_iter()
            .find(|m| m.kind == ModelKind::Embedding)
            .map(|m| m.name)
            .ok_or_else(|| {
                SupportError::invalid(
                    "embedding_model",
                    "no embedding model is registered: add one (`hearth models import DIR`) or \
                     set [support] embedding_model",
                )
            })
    }

    /// The support agent's chat model: `asked`, else `[support] chat_model`, else the first
    /// chat model registered.
    pub fn support_chat_model(&self, asked: Option<&str>) -> Result<String, SupportError> {
        if let Some(model) = asked.or(self.config().support.chat_model.as_deref()) {
            return Ok(model.to_string());
        }
        self.gateway()
            .models()?
            .into_iter()
            .find(|m| m.kind == ModelKind::Chat)
            .map(|m| m.name)
            .ok_or_else(|| {
                SupportError::invalid(
                    "chat_model",
                    "no chat model is registered: add one (`hearth models import PATH`) or \
                     set [support] chat_model",
                )
            })
    }

    /// Trains an intent model on `examples` and publishes it.
    pub async fn train_intents(
        &self,
        examples: &[LabelledText],
        options: &IntentTrainOptions,
        progress: &dyn IntentProgress,
    ) -> Result<(IntentModel, ArtifactVersion), SupportError> {
        let model = IntentModel::train(self.gateway(), examples, options, progress).await?;
        let artifacts = self.support_artifacts("intents");
        let version = artifacts.publish(|dir| model.save(dir))?;
        artifacts.prune(3)?;
        Ok((model, version))
    }

    /// The published intent model.
    pub fn intent_model(&self) -> Result<IntentModel, SupportError> {
        let current = self
            .support_artifacts("intents")
            .current()?
            .ok_or(SupportError::NotTrained)?;
        IntentModel::load(&current.dir)
    }
}
