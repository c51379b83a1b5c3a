"""Logistic regression with C chosen by stratified cross-validation, the one recipe behind the
embedding model's linear head, ensemble stacking and the out-of-fold runs (scikit-learn only)."""

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

C_GRID = np.logspace(-3, 2, 11)


def cv_folds(y: np.ndarray, *, seed: int = 0, folds: int = 5) -> StratifiedKFold:
    """The stratified folds every cross-validated comparison of heads uses (same rows, same seed:
    same folds), fewer when a class has fewer rows than folds."""
    return StratifiedKFold(max(2, min(folds, int(np.bincount(y).min()))), shuffle=True, random_state=seed)


def logistic_cv_fit(x: np.ndarray, y: np.ndarray, *, seed: int = 0, balanced: bool = False, folds: int = 5):
    """A fitted LogisticRegressionCV (L2, C from C_GRID by accuracy over stratified folds, refitted
    on all rows) and its cross-validated accuracy at the chosen C."""
    search = LogisticRegressionCV(
        Cs=C_GRID,
        l1_ratios=(0.0,),
        cv=cv_folds(y, seed=seed, folds=folds),
        scoring="accuracy",
        class_weight="balanced" if balanced else None,
        max_iter=5000,
        random_state=seed,
        use_legacy_attributes=True,
    )
    search.fit(x, y)
    # Same scores repeated per class; [folds, Cs(, l1 ratios)] -> mean over folds, best C.
    scores = np.asarray(next(iter(search.scores_.values())))
    cv_accuracy = float(scores.reshape(scores.shape[0], -1).mean(axis=0).max())
    return search, cv_accuracy
