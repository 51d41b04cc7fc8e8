import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.config import ConfigError, with_overrides
from generation.finetune import FinetuneConfig, finetune, read_meta
from generation.pipelines import register_pipeline_folder
from generation.registry import next_version_folder
from readerstudy.jobs.progress import TerminalProgress


class Command(BaseCommand):
    help = ("Fine-tune a local Stable Diffusion pipeline on real pool images with text prompts (LoRA through "
            "peft, or the whole UNet), save it as a new pipeline folder and register it as a generator.")

    def add_arguments(self, parser):
        parser.add_argument("base", nargs="?", help="The pipeline folder to start from (not with --resume).")
        parser.add_argument("--name", required=True, help="Generator name; each run makes a new version folder.")
        parser.add_argument("--licence", default="", help="Licence of the base weights (the data's are added).")
        parser.add_argument("--config", help="JSON file with FinetuneConfig fields.")
        parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                            help="Override config fields, e.g. modalities=XR method=lora steps=2000 lora_rank=16")
        parser.add_argument("--output-root", default=None, help="Where model folders go (default: DATA_DIR/models).")
        parser.add_argument("--resume", metavar="FOLDER", help="Continue fine-tuning in FOLDER (its checkpoint).")
        parser.add_argument("--no-register", action="store_true", help="Do not add it to the generators.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        if bool(opts["base"]) == bool(opts["resume"]):
            raise CommandError("give the base pipeline folder, or --resume FOLDER (not both)")
        try:
            data = (FinetuneConfig.from_dict(json.loads(Path(opts["config"]).read_text())).as_dict()
                    if opts["config"] else FinetuneConfig().as_dict())
            config = FinetuneConfig.from_dict(with_overrides(data, opts["set"]))
            folder = Path(opts["resume"]) if opts["resume"] else next_version_folder(opts["name"], opts["output_root"])
            self.stdout.write(f"Fine-tuning into {folder}")
            progress = TerminalProgress(enabled=not opts["no_progress"], unit="step", postfix_words=2)
            try:
                finetune(opts["base"] or "", folder, config, progress, resume=bool(opts["resume"]), name=opts["name"])
            finally:
                progress.close()
            from accelerate import PartialState

            if not PartialState().is_main_process:  # `accelerate launch`: the first process registers
                return
            if opts["no_register"]:
                self.stdout.write(f"Saved pipeline folder {folder}")
                return
            meta = read_meta(folder)
            licences = "; ".join(f"{name}: {lic}" for name, lic in meta["datasets"].items())
            version = folder.name[1:] if folder.name.startswith("v") and folder.name[1:].isdigit() else "1"
            generator, _ = register_pipeline_folder(
                folder, opts["name"], config.modalities, f"{opts['licence'] or 'base: see its model card'}; "
                f"fine-tuned on: {licences}", version=version, model_card=(folder / "MODEL_CARD.md").read_text(),
                config={"finetune": meta, "training_groups": meta["training_groups"]})
        except (ConfigError, OSError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Registered generator {generator} (id {generator.pk}) from {folder}")
