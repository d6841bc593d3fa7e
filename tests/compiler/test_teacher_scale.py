"""Teacher keys for scale: `api_base` lists, `adaptive`, `mode`; what the plan says for each."""

from __future__ import annotations

import pytest

from orcac.compiler import compile_spec
from orcac.errors import OrcacError

SPEC = """orca 1
teacher t {{
  model = "hosted_vllm/m"
  {keys}
}}
strategy s {{ system = "Be brief." }}
erase e {{ system = "You are helpful." }}
task k {{
  from = jsonl("data.jsonl")
  prompt = "{{{{ q }}}}"
  teacher = t
  strategy = s
}}
"""


def _plan(tmp_path, keys: str):
    (tmp_path / "data.jsonl").write_text('{"q": "hi"}\n')
    spec = tmp_path / "spec.orca"
    spec.write_text(SPEC.format(keys=keys))
    return compile_spec(spec)


def test_a_list_of_api_bases_is_a_tuple_in_the_plan(tmp_path):
    plan = _plan(tmp_path, 'api_base = ["http://a:8000/v1", "http://b:8000/v1"]')
    assert plan.teachers["t"].api_base == ("http://a:8000/v1", "http://b:8000/v1")


def test_a_one_element_list_is_that_url(tmp_path):
    plan = _plan(tmp_path, 'api_base = ["http://a:8000/v1"]')
    assert plan.teachers["t"].api_base == "http://a:8000/v1"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("api_base = []", "lists no servers"),
        ('api_base = ["http://a/v1", "http://a/v1"]', "is listed twice"),
        ("mode = offline", "must be one of online, batch"),
        ("adaptive = 3", "must be true or false"),
    ],
)
def test_bad_values_are_one_error_each(tmp_path, keys, message):
    with pytest.raises(OrcacError, match=message):
        _plan(tmp_path, keys)


def test_mode_and_adaptive_reach_the_plan(tmp_path):
    plan = _plan(tmp_path, "mode = batch\n  adaptive = false")
    assert plan.teachers["t"].mode == "batch" and plan.teachers["t"].adaptive is False
    assert _plan(tmp_path, "").teachers["t"].mode == "online"


def test_a_batch_teacher_is_estimated_at_batch_prices(tmp_path):
    _plan(tmp_path, "")  # writes the data file
    spec = tmp_path / "spec.orca"
    spec.write_text(SPEC.format(keys="").replace("hosted_vllm/m", "openai/gpt-4o-mini"))
    online = compile_spec(spec).estimate
    spec.write_text(SPEC.format(keys="mode = batch").replace("hosted_vllm/m", "openai/gpt-4o-mini"))
    batch = compile_spec(spec).estimate
    assert batch.cost == pytest.approx(online.cost / 2, rel=0.01)
