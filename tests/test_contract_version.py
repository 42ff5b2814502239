"""The contract carries its format's version; a newer one is refused in one line, unknown fields
of this one are ignored with a warning; all post-processing happens in Contract.postprocess."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facequal.contract import CONTRACT_VERSION, Contract, ContractError
from facequal.models.zoo import resolve_model


def _bundled() -> Contract:
    return resolve_model(None, task="quality").contract


def test_version_is_written_into_the_json():
    d = json.loads(_bundled().to_json())
    assert d["contract_version"] == CONTRACT_VERSION == 1


def test_unknown_fields_are_ignored_with_a_warning():
    d = json.loads(_bundled().to_json())
    d["added_later"] = {"x": 1}
    with pytest.warns(UserWarning, match="added_later"):
        c = Contract.from_dict(d)
    assert c == _bundled()


def test_a_newer_version_is_refused_in_one_line():
    d = json.loads(_bundled().to_json())
    d["contract_version"] = CONTRACT_VERSION + 1
    with pytest.raises(ContractError, match="newer than this facequal reads") as info:
        Contract.from_dict(d)
    assert "\n" not in str(info.value)


def test_a_contract_without_a_version_is_version_1():
    d = json.loads(_bundled().to_json())
    del d["contract_version"]
    assert Contract.from_dict(d).contract_version == 1


def test_postprocess_applies_the_sigmoid_then_the_calibration():
    c = Contract.from_dict(dict(json.loads(_bundled().to_json()), output="logit"))
    q, raw = c.postprocess(np.array([[0.0], [2.0]], dtype=np.float32))
    assert raw.dtype == np.float32 and q.dtype == np.float64
    np.testing.assert_allclose(raw, [0.5, 1 / (1 + np.exp(-2.0))], rtol=1e-6)
    np.testing.assert_array_equal(q, c.calibrate(raw))
