"""labelfree.core.gaussian_mixture: the mixture a set of responsibilities defines, and its posterior."""

import torch

from labelfree.core.gaussian_mixture import gaussian_log_densities, gmm_parameters, mixture_posterior


def _two_clusters(n: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([0.0, 0.0], dtype=torch.float64)
    b = torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([3.0, 1.0], dtype=torch.float64)
    return torch.cat([a, b]), torch.cat([torch.zeros(n), torch.ones(n)]).long()


def test_log_densities_match_torch_distributions():
    x, _ = _two_clusters(50)
    mu = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    sigma = torch.tensor([[[1.0, 0.3], [0.3, 0.5]], [[0.2, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    expected = torch.stack(
        [torch.distributions.MultivariateNormal(mu[k], sigma[k]).log_prob(x) for k in range(2)], dim=1
    )
    torch.testing.assert_close(gaussian_log_densities(x, mu, sigma, jitter=0.0), expected)


def test_posterior_tightens_a_component_that_took_too_much():
    """Responsibilities that give component 0 its cluster plus a third of the other, softly, define a mixture whose
    own posterior hands almost all of those pixels back."""
    x, truth = _two_clusters()
    gamma = torch.nn.functional.one_hot(truth, 2).double()
    stolen = (truth == 1) & (torch.arange(len(x)) % 3 == 0)
    gamma[stolen] = torch.tensor([0.7, 0.3], dtype=torch.float64)
    assert (gamma.argmax(1) != truth).sum() > 600
    post = mixture_posterior(x.T, gamma.T).T
    torch.testing.assert_close(post.sum(1), torch.ones(len(x), dtype=torch.float64))
    assert (post.argmax(1) != truth).float().mean() < 0.02  # from 17 % wrong
    alpha, mu, _ = gmm_parameters(x, gamma)
    assert alpha[0] > 0.6 and mu[0, 0] > 0.3  # the mixture the responsibilities define is itself skewed


def test_empty_component_gets_no_posterior_and_stays_finite():
    x, truth = _two_clusters(200)
    gamma = torch.zeros(len(x), 3, dtype=torch.float64)
    gamma[torch.arange(len(x)), truth] = 1.0  # component 2 has no mass
    post = mixture_posterior(x.T, gamma.T).T
    assert torch.isfinite(post).all() and (post[:, 2] == 0).all()
    assert (post.argmax(1) == truth).float().mean() > 0.99


def test_moment_form_equals_the_closed_form_parameters_and_densities():
    x, truth = _two_clusters(500)
    g = torch.Generator().manual_seed(3)
    gamma = torch.softmax(torch.randn(len(x), 3, generator=g, dtype=torch.float64) * 2, dim=1)
    alpha, mu, sigma = gmm_parameters(x, gamma)
    expected = torch.softmax(gaussian_log_densities(x, mu, sigma) + torch.log(alpha)[None], dim=1)
    torch.testing.assert_close(mixture_posterior(x.T, gamma.T).T, expected, rtol=1e-7, atol=1e-9)
