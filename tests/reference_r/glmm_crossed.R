# Reference values for readerstudy/stats/glmm.py: logistic GLMMs with crossed random intercepts for
# reader and case, fitted by lme4::glmer (Laplace approximation, nAGQ = 1), on the simulated visual
# Turing test in visual_turing_answers.csv. Run once (Debian: r-base-core, r-cran-lme4):
#
#     Rscript tests/reference_r/glmm_crossed.R > tests/reference_r/glmm_crossed.json
#
# Accuracy uses every answer; sensitivity the synthetic cases, specificity the real ones.
suppressMessages(library(lme4))
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
answers <- read.csv(file.path(here, "visual_turing_answers.csv"))
fit_one <- function(rows) {
  fit <- glmer(correct ~ 1 + (1 | reader) + (1 | case), data = rows, family = binomial,
               control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
  vc <- as.data.frame(VarCorr(fit))
  sprintf(paste0('{"intercept": %.10g, "se": %.10g, "var_reader": %.10g, "var_case": %.10g, ',
                 '"loglik": %.10g, "n": %d}'),
          fixef(fit)[[1]], sqrt(vcov(fit)[1, 1]), vc$vcov[vc$grp == "reader"], vc$vcov[vc$grp == "case"],
          as.numeric(logLik(fit)), nrow(rows))
}
cat(sprintf(paste0('{"source": "lme4 %s, R %s, glmer(correct ~ 1 + (1 | reader) + (1 | case), binomial, ',
                   'Laplace)",\n "accuracy": %s,\n "sensitivity": %s,\n "specificity": %s}\n'),
            packageVersion("lme4"), getRversion(),
            fit_one(answers), fit_one(answers[answers$truth == "synthetic", ]),
            fit_one(answers[answers$truth == "real", ])))
