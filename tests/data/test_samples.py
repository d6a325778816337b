"""Typed samples: each dataset's kind, its operator, batching, moving and normalisation."""

import pytest
import torch

from npgd_recon.core.operators import BlockAverageOp, CartesianOp, SenseOp
from npgd_recon.core.transforms import normalise
from npgd_recon.data.samples import CartesianSample, SenseSample, SuperResSample, collate
from npgd_recon.data.sources import PhantomSource
from npgd_recon.data.superres import BlockAveragedSet, lfw_faces
from npgd_recon.data.undersampled import Augment, UndersampledSet
from tests.conftest import randc


def cartesian(n: int = 2) -> list[CartesianSample]:
    return [CartesianSample(target=randc(8, 6), kspace=randc(8, 6),
                            mask=(torch.rand(8, 6) < 0.5).float(), noise=torch.tensor(0.1 * i))
            for i in range(1, n + 1)]


def test_each_dataset_gives_its_kind_of_sample_with_its_operator():
    source, augment = [PhantomSource(4, size=40)], Augment((24, 24))
    single = UndersampledSet(source, 2, augment=augment)[0]
    multi = UndersampledSet(source, 2, augment=augment, coils=(1, 3))[0]
    faces = BlockAveragedSet([lfw_faces("test")], 2)[0]
    assert type(single) is CartesianSample and type(single.operator()) is CartesianOp
    assert type(multi) is SenseSample and type(multi.operator()) is SenseOp
    assert type(faces) is SuperResSample and type(faces.operator()) is BlockAverageOp
    assert faces.measurement is faces.lowres and faces.noise_std is None
    assert multi.measurement is multi.kspace and multi.noise_std is multi.noise


def test_collate_stacks_items_into_a_batch_of_their_kind():
    items = cartesian(3)
    batch = collate(items)
    assert type(batch) is CartesianSample
    assert batch.kspace.shape == (3, 8, 6) and batch.noise.shape == (3,)
    torch.testing.assert_close(batch.mask[1], items[1].mask)
    maps = SenseSample(target=randc(8, 6), kspace=randc(2, 8, 6), mask=torch.ones(8, 6),
                       noise=torch.tensor(0.0), maps=randc(2, 8, 6))
    with pytest.raises(ValueError, match="one kind.*CartesianSample, SenseSample"):
        collate([items[0], maps])


def test_a_normalised_batch_is_the_measurement_scaled_by_its_zero_filled_image():
    batch = collate(cartesian(2))
    op, y, target, noise = batch.normalised()
    expected, scale = normalise(batch.kspace, CartesianOp(batch.mask))
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(target, batch.target / scale)
    torch.testing.assert_close(noise, batch.noise / scale.flatten())
    torch.testing.assert_close(op.forward(target), CartesianOp(batch.mask).forward(target))
    faces = collate([BlockAveragedSet([lfw_faces("test")], 2)[i] for i in range(2)])
    assert faces.normalised().noise is None


def test_a_sample_moves_as_a_whole_and_keeps_its_kind():
    sample = collate([SenseSample(target=randc(8, 6), kspace=randc(2, 8, 6),
                                  mask=torch.ones(8, 6), noise=torch.tensor(0.0),
                                  maps=randc(2, 8, 6))])
    moved = sample.to("meta")
    assert type(moved) is SenseSample
    assert all(t.device.type == "meta" for t in (moved.target, moved.kspace, moved.mask,
                                                 moved.noise, moved.maps))
    assert sample.target.device.type == "cpu"  # frozen: moving makes a new sample


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_the_loader_pins_a_batch_as_a_whole():
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned = pin_memory(collate(cartesian(2)))
    assert type(pinned) is CartesianSample and pinned.kspace.is_pinned()
