"""Background work of the statistics app (registered in StatsConfig): the analysis of a large study."""

from readerstudy.studies.models import Study

from .analysis import analyse_into_cache, analysis_state


def analysis(job, reporter) -> dict:
    """Analyse the study as it is now and cache the result under the key of that state."""
    study = Study.objects.get(pk=job.params["study_id"])
    policy, ci_method = job.params["policy"], job.params["ci_method"]
    key, answers = analysis_state(study, policy, ci_method)
    analyse_into_cache(study, key, policy, ci_method, progress=reporter)
    return {"study": study.slug, "answers": answers, "cache_key": key}
