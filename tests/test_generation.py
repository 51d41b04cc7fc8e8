"""Training, sampling, pipelines, external sets, DRRs and generation jobs."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image
from safetensors.torch import load_file

from generation.config import ConfigError, TrainConfig
from generation.generate import create_generation_job, run_generation
from generation.models import Generator
from generation.registry import read_model_folder, register_generator
from generation.sampling import load_model, sample
from generation.training import train
from readerstudy.accounts.roles import COORDINATOR, READER
from readerstudy.imaging.models import Dimensionality, Origin, PoolItem
from readerstudy.jobs.models import Job
from readerstudy.jobs.progress import JobCancelled, run_job
from readerstudy.jobs.queue import enqueue_job, retry_job

from .conftest import DATA, master_of, pydicom_file
from .services import REDIS_URL, available

pytestmark = pytest.mark.django_db

TINY_2D = {"dims": 2, "modalities": ["CT", "MR"], "resolution": 32, "channels": [16, 32], "attention": False,
           "calibration_samples": 0,
           "steps": 4, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2, "precision": "fp32"}
TINY_3D = {"dims": 3, "modalities": ["MR"], "resolution": 16, "depth": 8, "channels": [16, 32], "calibration_samples": 0,
           "steps": 3, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2, "precision": "fp32"}


@pytest.fixture
def small_pool(import_file):
    import_file(pydicom_file("CT_small.dcm"), modality="CT")
    import_file(DATA / "emri_small.dcm", modality="MR")  # a 10-slice MR volume
    import_file(pydicom_file("MR_small.dcm"), modality="MR")


@pytest.fixture
def tiny_model(small_pool, tmp_path):
    folder = train(TrainConfig.from_dict(TINY_2D), tmp_path / "tiny" / "v1", name="tiny")
    return register_generator(folder)


def weights(folder):
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_train_and_sample_smoke(tiny_model, tmp_path):
    folder = tmp_path / "tiny" / "v1"
    meta = read_model_folder(folder)
    assert meta["steps_trained"] == 4 and meta["modalities"] == ["CT", "MR"] and meta["training_items"] == 3
    assert "Not for clinical use" in (folder / "MODEL_CARD.md").read_text()
    assert "test scans" in (folder / "MODEL_CARD.md").read_text()  # training data and licence named
    assert tiny_model.kind == Generator.Kind.BUILTIN_2D and tiny_model.version == "1"
    images = sample(load_model(folder), "MR", seeds=[1, 2, 3], steps=3)
    assert images.shape == (3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert not np.allclose(images[0], images[1])


def test_resume_from_checkpoint_matches_uninterrupted_training(small_pool, tmp_path):
    straight = train(TrainConfig.from_dict(TINY_2D), tmp_path / "a")
    interrupted = tmp_path / "b"
    train(TrainConfig.from_dict({**TINY_2D, "steps": 2}), interrupted)
    (interrupted / "generator.json").unlink()  # as if it had stopped after the checkpoint at step 2
    train(TrainConfig.from_dict(TINY_2D), interrupted, resume=True)
    assert read_model_folder(interrupted)["steps_trained"] == 4
    a, b = weights(straight), weights(interrupted)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_config(small_pool, tmp_path):
    train(TrainConfig.from_dict({**TINY_2D, "steps": 2}), tmp_path / "m")
    with pytest.raises(ConfigError, match="only 'steps' may change"):
        train(TrainConfig.from_dict({**TINY_2D, "learning_rate": 0.1}), tmp_path / "m", resume=True)
    with pytest.raises(ConfigError, match="already holds a model"):
        train(TrainConfig.from_dict(TINY_2D), tmp_path / "m")


def test_same_seed_same_pixels(tiny_model, tmp_path):
    model = load_model(tmp_path / "tiny" / "v1")
    first = sample(model, "CT", seeds=[7, 8], steps=4)
    again = sample(model, "CT", seeds=[7, 8], steps=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, sample(model, "CT", seeds=[9, 10], steps=4))
    # Per-sample seeds: sample 8 is the same whether drawn alone or in a batch.
    np.testing.assert_allclose(sample(model, "CT", seeds=[8], steps=4)[0], first[1], atol=1e-5)


def test_generate_command_fills_the_pool_with_checked_items(tiny_model, capsys):
    call_command("generate", model="tiny", modality="MR", n=3, seed=100, steps=3, no_progress=True)
    job = Job.objects.get(kind=Job.Kind.GENERATE)
    items = list(PoolItem.objects.filter(origin=Origin.SYNTHETIC).order_by("seed"))
    assert [i.seed for i in items] == [100, 101, 102]
    assert all(i.generator == tiny_model and i.generation_job == job and i.modality == "MR" for i in items)
    for item in items:
        assert item.quality["nearest_real_item"] in PoolItem.objects.filter(origin=Origin.REAL).values_list("pk", flat=True)
        assert -1 <= item.quality["nearest_real_similarity"] <= 1
        assert item.quality["near_copy"] in (True, False)
    assert job.status == Job.Status.SUCCEEDED and job.result["diversity"] is not None
    assert "3 MR samples" in capsys.readouterr().out


def test_generation_is_reproducible_through_the_pool(tiny_model):
    for _ in range(2):
        run_job(create_generation_job(tiny_model, "CT", 2, seed=5, steps=3).pk, run_generation)
    first, second = Job.objects.order_by("pk")
    a = [master_of(i) for i in first.generated_items.order_by("seed")]
    b = [master_of(i) for i in second.generated_items.order_by("seed")]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_generation_reports_progress_within_a_batch(tiny_model):
    """A batch of samples can take minutes on a CPU: the job says which denoising step it is at."""

    class Recorder:
        def __init__(self):
            self.messages, self.done = [], 0

        def start(self, total):
            self.total = total

        def advance(self, n=1, message=""):
            self.done += n
            self.messages.append((self.done, message))

        def check_cancelled(self):
            pass

    recorder = Recorder()
    run_generation(create_generation_job(tiny_model, "CT", 2, seed=11, steps=3), recorder)
    steps = [m for done, m in recorder.messages if "denoising step" in m]
    assert steps == [f"seeds 11–12: denoising step {k} of 3" for k in (1, 2, 3)]
    assert recorder.messages[0] == (0, steps[0])  # step reports do not count as finished samples
    assert recorder.done == 2


def test_cancelled_job_retries_without_duplicates(tiny_model):
    job = create_generation_job(tiny_model, "MR", 6, seed=0, steps=2)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    job = run_job(job.pk, run_generation)
    assert job.status == Job.Status.CANCELLED and job.generated_items.count() == 0
    # A partial earlier run stops after one chunk (seeds 0..3); the retry makes only 4 and 5.
    Job.objects.filter(pk=job.pk).update(cancel_requested=False, status=Job.Status.QUEUED)
    job.refresh_from_db()
    with pytest.raises(JobCancelled):
        run_generation(job, _StopAfter(1))
    assert job.generated_items.count() == 4  # one chunk of four before the stop
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    assert retry_job(job)
    job = run_job(job.pk, run_generation)
    assert job.status == Job.Status.SUCCEEDED
    assert sorted(job.generated_items.values_list("seed", flat=True)) == [0, 1, 2, 3, 4, 5]


class _StopAfter:
    """A progress sink that stops the work after `n` cancellation checks."""

    def __init__(self, n):
        self.n = n

    def start(self, total):
        pass

    def advance(self, n=1, message=""):
        pass

    def check_cancelled(self):
        self.n -= 1
        if self.n < 0:
            raise JobCancelled()


def test_volume_model_writes_slice_stacks(import_file, tmp_path):
    import_file(DATA / "emri_small.dcm", modality="MR")
    generator = register_generator(train(TrainConfig.from_dict(TINY_3D), tmp_path / "vol" / "v1", name="vol"))
    assert generator.kind == Generator.Kind.BUILTIN_3D
    run_job(create_generation_job(generator, "MR", 2, seed=0, steps=2).pk, run_generation)
    items = PoolItem.objects.filter(origin=Origin.SYNTHETIC)
    assert items.count() == 2
    for item in items:
        assert item.dimensionality == Dimensionality.VOLUME and item.master_shape == [8, 16, 16]
        assert -1 <= item.quality["slice_consistency"] <= 1
        assert not item.renditions.exists()  # rendered when a study needs it, at the study's framing


@pytest.mark.parametrize(
    "change, message",
    [
        ({"resolution": 33}, "must be divisible by 2"),
        ({"channels": [12, 24]}, "multiple of 8"),
        ({"dims": 3, "modalities": ["XR"]}, "X-ray has no volumes"),
        ({"modalities": ["PET"]}, "unknown modality"),
        ({"learning_rate": 5}, "learning_rate"),
        ({"precision": "fp8"}, "precision"),
        ({"colour": True}, "unknown config keys: colour"),
    ],
)
def test_bad_configs_are_rejected(change, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({**TINY_2D, **change})


def test_training_without_data_says_so(db, tmp_path):
    with pytest.raises(ConfigError, match="no real images of modality CT, MR"):
        train(TrainConfig.from_dict(TINY_2D), tmp_path / "m")


def test_train_command_errors(small_pool, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("train_generator", name="x", config=str(bad))
    with pytest.raises(CommandError, match="--set expects KEY=VALUE"):
        call_command("train_generator", "--name", "x", "--set", "nonsense")
    with pytest.raises(CommandError, match="may hold only letters"):
        call_command("train_generator", "--name", "../evil", "--output-root", str(tmp_path))


def test_train_command_trains_versions(small_pool, tmp_path, capsys):
    args = ["--name", "cli", "--output-root", str(tmp_path), "--no-progress",
            "--set", "resolution=32", "channels=16,32", "attention=false", "steps=2", "batch_size=2",
            "modalities=CT,MR"]
    call_command("train_generator", *args)
    call_command("train_generator", *args)
    assert sorted(Generator.objects.filter(name="cli").values_list("version", flat=True)) == ["1", "2"]
    assert (tmp_path / "cli" / "v2" / "generator.json").exists()


def test_bad_model_folders_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        read_model_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="generator.json is missing"):
        read_model_folder(tmp_path / "empty")


def test_sampling_refuses_a_modality_the_model_does_not_make(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="makes CT, MR, not XR"):
        sample(load_model(tmp_path / "tiny" / "v1"), "XR", seeds=[0])


# --- local pipelines -------------------------------------------------------------


@pytest.fixture
def pipeline_folder(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=8)
    folder = tmp_path / "my-pipeline"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50)).save_pretrained(folder)
    return folder


def test_local_pipeline_registers_and_generates(pipeline_folder, capsys):
    call_command("register_pipeline", str(pipeline_folder), name="my-sd", modality=["XR"], licence="CreativeML OpenRAIL-M")
    assert "DDPMPipeline, unconditional" in capsys.readouterr().out
    generator = Generator.objects.get(name="my-sd")
    assert generator.kind == Generator.Kind.LOCAL_PIPELINE
    call_command("generate", model="my-sd", modality="XR", n=2, seed=3, steps=2, no_progress=True)
    items = PoolItem.objects.filter(generator=generator).order_by("seed")
    assert [i.seed for i in items] == [3, 4] and items[0].master_shape == [1, 16, 16]
    # Same seed, same pixels, through the pipeline too.
    call_command("generate", model="my-sd", modality="XR", n=1, seed=3, steps=2, no_progress=True)
    repeat = PoolItem.objects.filter(generator=generator, seed=3).order_by("pk")
    assert np.array_equal(master_of(repeat[0]), master_of(repeat[1]))
    with pytest.raises(CommandError, match="only local pipelines take text prompts|takes no text prompt"):
        call_command("generate", model="my-sd", modality="XR", n=1, prompt="chest x-ray", no_progress=True)


def test_bad_pipeline_folders_are_rejected(tmp_path):
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("register_pipeline", str(tmp_path / "nope"), name="x", modality=["XR"], licence="x")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CommandError, match="model_index.json is missing"):
        call_command("register_pipeline", str(tmp_path / "plain"), name="x", modality=["XR"], licence="x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"]}))
    with pytest.raises(CommandError, match="could not be loaded as a diffusers pipeline"):
        call_command("register_pipeline", str(broken), name="x", modality=["XR"], licence="x")
    assert not Generator.objects.exclude(kind=Generator.Kind.CONTROL).exists()


# --- external sets and DRRs --------------------------------------------------------


def test_import_external_synthetic_set(tmp_path):
    folder = tmp_path / "dalle"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    call_command("import_synthetic", str(folder), generator="DALL-E 2", modality="XR", licence="OpenAI terms",
                 prompt="a chest x-ray", no_progress=True)
    items = PoolItem.objects.all()
    assert items.count() == 2
    for item in items:
        assert item.origin == Origin.SYNTHETIC and item.prompt == "a chest x-ray"
        assert item.generator.kind == Generator.Kind.EXTERNAL and item.generator.licence == "OpenAI terms"
        assert item.dataset.origin == Origin.SYNTHETIC and item.source_sha256


def test_drr_from_ct_volume(import_file, tmp_path):
    hu = np.full((40, 30, 20), -1000, dtype=np.int16)  # air
    hu[5:35, 5:25, :] = 0  # water body
    hu[18:22, 5:25, :] = 1500  # a bone rod along the anterior-posterior axis, centred left-right
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    import_file(path, modality="CT")
    call_command("make_drr")
    drr = PoolItem.objects.get(origin=Origin.SYNTHETIC)
    assert drr.modality == "XR" and drr.generator.kind == Generator.Kind.DRR
    image = master_of(drr)[0].astype(float)
    assert image.shape == (40, 40)  # 20 slices of 2 mm -> 40 rows at 1 mm
    assert image[:, 19:21].mean() > image[:, 8:12].mean() > image[:, :3].mean()  # bone > soft tissue > air
    assert "near_copy" in drr.quality  # checked like every generated item
    call_command("make_drr")  # idempotent
    assert PoolItem.objects.filter(origin=Origin.SYNTHETIC).count() == 1


# --- pages and background tasks ------------------------------------------------------


def test_generate_page_queues_a_job(client, tiny_model, django_capture_on_commit_callbacks):
    user = User.objects.create_user("coord", password="x")
    user.groups.add(Group.objects.get(name=COORDINATOR))
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("generate"), {"generator": tiny_model.pk, "modality": "CT", "n": 2, "seed": 0,
                                                     "steps": 2, "prompt": ""})
    job = Job.objects.get()
    assert response.url == reverse("job-detail", args=[job.pk])
    assert job.status == Job.Status.SUCCEEDED and job.generated_items.count() == 2
    response = client.post(reverse("generate"), {"generator": tiny_model.pk, "modality": "XR", "n": 1, "seed": 0,
                                                 "steps": 2})
    assert b"makes CT, MR, not XR" in response.content
    assert client.get(reverse("generator-detail", args=[tiny_model.pk])).status_code == 200


def test_readers_cannot_generate(client, tiny_model):
    user = User.objects.create_user("r", password="x")
    user.groups.add(Group.objects.get(name=READER))
    client.force_login(user)
    assert client.get(reverse("generate")).status_code == 403
    assert client.get(reverse("generator-list")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_job_runs_through_the_database_backend(tiny_model, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
    job = create_generation_job(tiny_model, "MR", 2, seed=0, steps=2)
    enqueue_job(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.task_id
    call_command("db_worker", batch=True, interval=0, no_startup_delay=True)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.generated_items.count() == 2


@pytest.mark.skipif(not available("redis", REDIS_URL), reason=f"SKIPPED LOUDLY: no Redis at {REDIS_URL}")
@pytest.mark.django_db(transaction=True)
def test_job_runs_through_rq_on_redis(tiny_model, settings, monkeypatch):
    import django_rq
    import django_rq.settings
    from django_tasks_rq.backend import Job as RQJob
    from rq import SimpleWorker

    monkeypatch.setattr(django_rq.settings, "QUEUES", {"default": {"URL": REDIS_URL}})
    settings.TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    queue = django_rq.get_queue("default", job_class=RQJob)
    queue.empty()
    job = create_generation_job(tiny_model, "CT", 2, seed=0, steps=2)
    enqueue_job(job.pk)
    assert len(queue) == 1
    SimpleWorker([queue], connection=queue.connection, job_class=RQJob).work(burst=True)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.generated_items.count() == 2
    queue.empty()


def test_ct_companding_round_trips_exactly_and_favours_soft_tissue():
    from generation.intensity import codes_to_model, model_to_unit

    codes = np.arange(0, 4096, dtype=np.uint16)
    model = codes_to_model(codes, "CT", companded=True)
    np.testing.assert_array_equal(np.rint(model_to_unit(model, "CT", companded=True) * 4095), codes)
    # 50 HU of soft tissue spans far more of the model's range than in the linear space.
    soft = codes_to_model(np.array([1024 + 40, 1024 + 90], np.uint16), "CT", companded=True)
    assert soft[1] - soft[0] > 5 * (50 / 4095)
    # XR and MR are untouched.
    np.testing.assert_allclose(codes_to_model(codes, "MR", companded=True), codes / 4095, rtol=1e-6)


@pytest.fixture
def tiny_stable_diffusion(tmp_path):
    """A tiny text-to-image Stable Diffusion pipeline, built offline with a hand-made CLIP vocabulary."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), pad_token="<|endoftext|>",
                              model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(num_train_timesteps=50), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    folder = tmp_path / "tiny-sd"
    pipe.save_pretrained(folder)
    return folder


def test_text_to_image_pipeline_takes_prompts(tiny_stable_diffusion, capsys):
    call_command("register_pipeline", str(tiny_stable_diffusion), name="roentgen-tiny", modality=["XR"],
                 licence="CreativeML OpenRAIL-M")
    assert "StableDiffusionPipeline, takes text prompts" in capsys.readouterr().out
    call_command("generate", model="roentgen-tiny", modality="XR", n=2, seed=1, steps=2,
                 prompt="chest x-ray no findings", no_progress=True)
    items = PoolItem.objects.filter(generator__name="roentgen-tiny").order_by("seed")
    assert [i.prompt for i in items] == ["chest x-ray no findings"] * 2 and items[0].master_shape == [1, 16, 16]
    assert not np.array_equal(master_of(items[0]), master_of(items[1]))
    with pytest.raises(CommandError, match="needs a text prompt"):
        call_command("generate", model="roentgen-tiny", modality="XR", n=1, no_progress=True)
