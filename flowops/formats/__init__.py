"""Model-server formats: what MLflow, KServe v1/v2 and TF Serving take and answer.

One home for them, read by the gateway (:mod:`flowops.gateway.payloads`: rows of
features and predictions for the traffic events), the monitor's serving probe
(:mod:`flowops.monitor.probes.serving`: a canary's predictions' shape) and the CI gate's
contract suite (:mod:`flowops.ops.contract`: rows sent, predictions answered). Pure
functions on parsed JSON, no I/O; only the standard library, so the monitor stays light.

=====================  ==============================================  =======================
format                 request                                         response
=====================  ==============================================  =======================
``instances``          ``{"instances": [row, ...]}``, as KServe v1,    ``{"predictions": [...]}``
                       MLflow and TF Serving send it; a row is an
                       object, an array or one value
``kserve_v2``          ``{"inputs": [{"name", "shape", "datatype",     ``{"outputs": [...]}``
                       "data"}, ...]}`` (Open Inference Protocol)
``inputs``             MLflow's ``{"inputs": {"a": [...], ...}}``      ``{"predictions": ...}``
                       (an array per input) or ``{"inputs": [row]}``   or a bare array
``dataframe_split``    ``{"dataframe_split": {"columns", "data"}}``    the same
``dataframe_records``  ``{"dataframe_records": [{...}, ...]}``         the same
``object``             any other JSON object: one row of features      any JSON: the prediction
``csv``                ``text/csv`` with a header row, as MLflow       the same as JSON's
                       takes it (read by :mod:`flowops.gateway.csv_rows`)
=====================  ==============================================  =======================

**Names.** A payload's own names win (object keys, ``columns``, tensor names). Where it
has none (rows that are arrays, a single 2-D tensor), the route's ``features`` name the
values in order, and ``f0, f1, ...`` any value beyond them.

**Values.** Numbers and strings are kept, ``null`` is a missing value (so are ``NaN``
and ``Infinity``, which Python's ``json.dumps`` writes and MLflow reads), booleans become
``"true"`` / ``"false"`` (a category, as ``flowops drift baseline`` reads them from data
files). Arrays and objects are not one feature value: they are left out of the row.

**KServe v2.** The first dimension of each tensor is the batch: one row per element.
An input of shape ``[N]`` is one feature; a single input of shape ``[N, k]`` holds
``k`` features, named as arrays are; with several inputs, ``[N, k]`` gives
``name[0] ... name[k-1]``. Inputs of rank 3 or more (images) are left out, with a note.

**Modules.** :mod:`~flowops.formats.rows` reads a request's rows,
:mod:`~flowops.formats.answers` a response's predictions and their shape,
:mod:`~flowops.formats.tensors` KServe v2 tensors, :mod:`~flowops.formats.kinds` names
the formats and the protocols.

>>> read_request({"instances": [[5.1, 3.5], [6.2, 2.9]]}, ["sepal", "width"]).rows
[{'sepal': 5.1, 'width': 3.5}, {'sepal': 6.2, 'width': 2.9}]
>>> read_predictions({"predictions": [0, 2]}, 2)
([0, 2], None)
"""

from __future__ import annotations

from flowops.formats.answers import predictions_shape, read_predictions, shape_matches, shape_of
from flowops.formats.kinds import PayloadFormat, ServingProtocol
from flowops.formats.rows import RequestRows, input_rows, read_request
from flowops.formats.tensors import Tensor, flatten, is_v2, read_tensor

__all__ = [
    "PayloadFormat",
    "RequestRows",
    "ServingProtocol",
    "Tensor",
    "flatten",
    "input_rows",
    "is_v2",
    "predictions_shape",
    "read_predictions",
    "read_request",
    "read_tensor",
    "shape_matches",
    "shape_of",
]
