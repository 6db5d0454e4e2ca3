from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from exporters.errors import ExportError, ParityError
from exporters.publish import PublishOptions, export_sklearn
from tests.exporters.conftest import run_stored

NO_NODE = PublishOptions(check_node=False)

CLASSIFIERS = {
    "logistic_regression": lambda: LogisticRegression(max_iter=500),
    "decision_tree": lambda: DecisionTreeClassifier(max_depth=4, random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=15, random_state=0),
    "svc": lambda: SVC(),  # decision-function scores: SVC(probability=True) is deprecated in scikit-learn 1.9
    "knn": lambda: KNeighborsClassifier(n_neighbors=5),
    "gaussian_nb": lambda: GaussianNB(),
    "mlp": lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=400, random_state=0),
    "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
}
REGRESSORS = {
    "ridge": lambda: Ridge(alpha=1.0),
    "decision_tree_regressor": lambda: DecisionTreeRegressor(max_depth=5, random_state=0),
    "gradient_boosting_regressor": lambda: GradientBoostingRegressor(n_estimators=30, random_state=0),
}


@pytest.mark.parametrize("family", sorted(CLASSIFIERS))
def test_classifier_family_converts_with_parity(family, iris, store):
    x_train, y_train, held_out = iris
    model = CLASSIFIERS[family]().fit(x_train, y_train)
    labels = ["setosa", "versicolor", "virginica"]

    metadata = export_sklearn(store, model, name=family.replace("_", "-"), version="v1.0.0", sample=held_out,
                              labels=labels, options=NO_NODE)

    assert metadata.parity.passed and metadata.parity.rows == len(held_out)
    assert metadata.parity.label_agreement == 1.0
    assert metadata.label_output == "label" and metadata.score_output == "probabilities"
    assert [o.name for o in metadata.outputs] == ["label", "probabilities"]
    assert metadata.inputs[0].shape == ["batch", 4] and metadata.inputs[0].dtype == "float32"
    stored = run_stored(store, metadata.name, "v1.0.0", {"input": held_out.astype(np.float32)})
    x32 = held_out.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(stored["label"], model.predict(x32))
    scores = model.predict_proba(x32) if hasattr(model, "predict_proba") else model.decision_function(x32)
    np.testing.assert_allclose(stored["probabilities"], scores, atol=1e-4)


@pytest.mark.parametrize("family", sorted(REGRESSORS))
def test_regressor_family_converts_with_parity(family, diabetes, store):
    x_train, y_train, held_out = diabetes
    model = REGRESSORS[family]().fit(x_train, y_train)

    metadata = export_sklearn(store, model, name=family.replace("_", "-"), version="v1.0.0", sample=held_out,
                              options=NO_NODE)

    assert metadata.task == "regression" and metadata.parity.passed
    assert metadata.parity.max_abs_diff <= metadata.parity.tolerance
    stored = run_stored(store, metadata.name, "v1.0.0", {"input": held_out.astype(np.float32)})
    expected = model.predict(held_out.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(stored["variable"].ravel(), expected, rtol=1e-4, atol=1e-3)


def test_kmeans_exports_cluster_ids_and_distances(iris, store):
    x_train, _, held_out = iris
    model = KMeans(n_clusters=3, n_init=3, random_state=0).fit(x_train)

    metadata = export_sklearn(store, model, name="kmeans", version="v1.0.0", sample=held_out, options=NO_NODE)

    assert metadata.task == "clustering" and metadata.parity.passed and metadata.parity.label_agreement == 1.0
    stored = run_stored(store, "kmeans", "v1.0.0", {"input": held_out.astype(np.float32)})
    np.testing.assert_array_equal(stored["label"], model.predict(held_out.astype(np.float32).astype(np.float64)))


def test_pca_exports_as_transform(iris, store):
    x_train, _, held_out = iris
    model = PCA(n_components=2).fit(x_train)

    metadata = export_sklearn(store, model, name="pca", version="v1.0.0", sample=held_out, options=NO_NODE)

    assert metadata.task == "transform" and metadata.outputs[0].shape == ["batch", 2]
    stored = run_stored(store, "pca", "v1.0.0", {"input": held_out.astype(np.float32)})
    np.testing.assert_allclose(stored["variable"], model.transform(held_out), atol=1e-4)


class HandWrittenRule(ClassifierMixin, BaseEstimator):
    """An estimator skl2onnx has never heard of."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, x):
        return (x[:, 0] > 5).astype(int)


def test_unconvertible_estimator_is_refused_by_name(iris, store):
    x_train, y_train, held_out = iris
    with pytest.raises(ExportError, match="HandWrittenRule"):
        export_sklearn(store, HandWrittenRule().fit(x_train, y_train), name="rule", version="v1.0.0",
                       sample=held_out, options=NO_NODE)
    assert not store.root.exists() or store.list_models() == []


def test_parity_beyond_tolerance_refuses_and_writes_nothing(iris, store):
    x_train, y_train, held_out = iris
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    with pytest.raises(ParityError, match="exceeds"):
        export_sklearn(store, model, name="strict", version="v1.0.0", sample=held_out,
                       options=PublishOptions(check_node=False, tolerance=0.0))
    assert not store.root.exists() or store.list_models() == []


def test_without_sample_rows_parity_uses_synthetic_rows(iris, store):
    x_train, y_train, _ = iris
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)

    metadata = export_sklearn(store, model, name="synthetic", version="v1.0.0", options=NO_NODE)

    assert metadata.parity.passed and metadata.parity.synthetic_rows and metadata.parity.rows > 0
    assert not metadata.reference_stats.available and metadata.reference_stats.reason
    assert metadata.dataset_sha256 is None


def test_labels_must_match_the_classes(iris, store):
    x_train, y_train, held_out = iris
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    with pytest.raises(ExportError, match="2 labels given but LogisticRegression has 3 classes"):
        export_sklearn(store, model, name="labels", version="v1.0.0", sample=held_out, labels=["a", "b"],
                       options=NO_NODE)


def test_sample_with_wrong_width_is_refused(iris, store):
    x_train, y_train, held_out = iris
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    with pytest.raises(ExportError, match="3 features"):
        export_sklearn(store, model, name="width", version="v1.0.0", sample=held_out[:, :3], options=NO_NODE)


@pytest.mark.parametrize("estimator", [SVC, LinearSVC], ids=["svc", "linear_svc"])
def test_binary_decision_function_classifiers_compare_scores(estimator, cancer, store):
    x_train, y_train, held_out = cancer
    model = make_pipeline(StandardScaler(), estimator()).fit(x_train, y_train)

    metadata = export_sklearn(store, model, name="binary", version="v1.0.0", sample=held_out, options=NO_NODE)

    assert metadata.parity.passed and metadata.parity.label_agreement == 1.0
    assert "probabilities" in metadata.parity.detail
