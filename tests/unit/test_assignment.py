import torch

from stream_dec.model.assignment import clustering_loss, log_soft_assignment, soft_assignment, target_distribution


def paper_q(z, centres, alpha):
    """DEC eq. 1 written out literally, as a reference."""
    kernel = (1 + ((z[:, None, :] - centres[None]) ** 2).sum(-1) / alpha) ** (-(alpha + 1) / 2)
    return kernel / kernel.sum(1, keepdim=True)


def test_soft_assignment_rows_sum_to_one():
    q = soft_assignment(torch.randn(50, 4), torch.randn(7, 4), alpha=1.0)
    assert q.shape == (50, 7)
    assert torch.allclose(q.sum(1), torch.ones(50), atol=1e-6)
    assert bool((q > 0).all())


def test_soft_assignment_matches_paper_equation_for_several_alphas():
    z, centres = torch.randn(20, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    for alpha in (0.5, 1.0, 4.0):
        assert torch.allclose(soft_assignment(z, centres, alpha), paper_q(z, centres, alpha), atol=1e-10)


def test_nearest_centre_gets_the_largest_share():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = torch.tensor([[9.0, 1.0], [0.5, 8.0]])
    assert soft_assignment(z, centres, 1.0).argmax(1).tolist() == [1, 2]


def test_log_soft_assignment_is_stable_far_from_centres():
    log_q = log_soft_assignment(torch.tensor([[1e6, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 0.0]]), alpha=1.0)
    assert bool(torch.isfinite(log_q).all())


def test_target_distribution_by_hand():
    q = torch.tensor([[0.6, 0.4], [0.5, 0.5]], dtype=torch.float64)
    # f_j = q.sum(0) = [1.1, 0.9]
    row0 = torch.tensor([0.36 / 1.1, 0.16 / 0.9], dtype=torch.float64)
    assert torch.allclose(target_distribution(q)[0], row0 / row0.sum())


def test_target_sharpens_confident_rows():
    q = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.7]])
    p = target_distribution(q)
    assert torch.allclose(p.sum(1), torch.ones(3))
    assert bool((p.max(1).values > q.max(1).values).all())


def test_clustering_loss_is_zero_only_when_q_equals_p():
    q = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    assert clustering_loss(q.log(), q).abs().item() < 1e-7
    assert clustering_loss(q.log(), target_distribution(q)).item() > 0
