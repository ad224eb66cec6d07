"""The DARTS export rule on hand-set architecture logits."""

import pytest
import torch

from nni_base.space.gumbel_cell import alpha_entropy, derive_cell, edge_index, num_edges

OPS = ['max_pool_3x3', 'avg_pool_3x3', 'skip_connect', 'sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3', 'dil_conv_5x5']
NONE = len(OPS)


def logits(strong: dict[tuple[int, int], tuple[int, float]]) -> torch.Tensor:
    alpha = torch.zeros(num_edges(4, 2), len(OPS) + 1)
    for (node, pred), (op, value) in strong.items():
        alpha[edge_index(node, pred, 2), op] = value
    return alpha


def test_edge_indexing_covers_the_dag_once():
    seen = [edge_index(i, j, 2) for i in range(2, 6) for j in range(i)]
    assert seen == list(range(14))


def test_best_non_none_op_and_two_strongest_edges_per_node():
    alpha = logits(
        {
            (2, 0): (3, 2.0),
            (2, 1): (0, 1.0),
            (3, 0): (4, 0.5),
            (3, 1): (1, 3.0),
            (3, 2): (2, 2.5),
            (4, 3): (5, 4.0),
            (4, 0): (6, 1.0),
            (4, 2): (NONE, 9.0),  # a strong `none` never wins
            (5, 4): (3, 2.0),
            (5, 1): (4, 1.9),
            (5, 2): (0, 1.8),
        }
    )
    sample = derive_cell(alpha, OPS, 'normal', num_nodes=4)
    assert sample['normal/op_2_0'] == 'sep_conv_3x3' and sample['normal/input_2_0'] == [0]
    assert sample['normal/op_2_1'] == 'max_pool_3x3' and sample['normal/input_2_1'] == [1]
    # node 3: edges from 1 (avg_pool, 3.0) and 2 (skip, 2.5), ordered by input index
    assert [sample['normal/input_3_0'], sample['normal/input_3_1']] == [[1], [2]]
    assert [sample['normal/op_3_0'], sample['normal/op_3_1']] == ['avg_pool_3x3', 'skip_connect']
    # node 4: 3 (dil_conv_3x3) and 0 (dil_conv_5x5); the edge from 2 is mostly `none` so it is weak
    assert [sample['normal/input_4_0'], sample['normal/input_4_1']] == [[0], [3]]
    assert [sample['normal/op_4_0'], sample['normal/op_4_1']] == ['dil_conv_5x5', 'dil_conv_3x3']
    assert [sample['normal/input_5_0'], sample['normal/input_5_1']] == [[1], [4]]
    assert len(sample) == 16


def test_entropy_is_maximal_for_uniform_logits():
    uniform = torch.zeros(14, 8)
    peaked = uniform.clone()
    peaked[:, 0] = 10.0
    assert alpha_entropy(uniform).item() == pytest.approx(torch.log(torch.tensor(8.0)).item(), rel=1e-5)
    assert alpha_entropy(peaked).item() < 0.01
