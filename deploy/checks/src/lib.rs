//! Checks of the deployment files under `deploy/`: the package holds no
//! code, its tests are the checks (`tests/deploy_files.rs`: references
//! between the files and to the code). The validators that need tools run
//! in `scripts/validate-deploy.sh`.
