{
  description = "Sinara Thermostat support: asyncio driver, simulator, ARTIQ controller (aqctl_thermostat) and HTTP bridge";

  # Modelled on m-labs/artiq-comtools.  The flake lives in nix/ and builds the
  # repository root (../): Nix copies the whole git repository, and only
  # git-tracked files are visible to it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
  inputs.sipyco.url = "github:m-labs/sipyco";
  inputs.sipyco.inputs.nixpkgs.follows = "nixpkgs";
  inputs.flake-utils.url = "github:numtide/flake-utils";

  outputs = { self, nixpkgs, sipyco, flake-utils }:
    flake-utils.lib.eachSystem [ "x86_64-linux" "aarch64-linux" ] (system:
      let
        pkgs = nixpkgs.legacyPackages.${system};
        python = pkgs.python3;
        # Not in nixpkgs: /docs and /redoc without a CDN (its PyPI wheel).
        fastapi-offline = python.pkgs.buildPythonPackage rec {
          pname = "fastapi_offline";
          version = "1.7.7";
          format = "wheel";
          src = python.pkgs.fetchPypi {
            inherit pname version format;
            dist = "py3";
            python = "py3";
            hash = "sha256-YMg5n9fT47AVEOFEaHCePeoaDnc++SA3LQVzktc2ofk=";
          };
          propagatedBuildInputs = [ python.pkgs.fastapi ];
        };
        deps = ps: [
          ps.numpy
          ps.scipy
          ps.fastapi
          ps.uvicorn
          ps.httptools
          ps.pydantic
          ps.prometheus-client
          ps.isal
          ps.rich
          ps.httpx
          ps.pyarrow
          ps.sse-starlette
          fastapi-offline
          sipyco.packages.${system}.sipyco
        ];
        testDeps = ps: [
          ps.pytest
          ps.pytest-asyncio
          ps.pytest-timeout
          ps.hypothesis
          ps.pyyaml
          ps.playwright
        ];
        thermostat_ctrl = python.pkgs.buildPythonPackage {
          pname = "thermostat_ctrl";
          version = "0.1.0";
          src = ./..;
          pyproject = true;
          build-system = [ python.pkgs.setuptools ];
          propagatedBuildInputs = deps python.pkgs;
          nativeCheckInputs = testDeps python.pkgs;
          # The tests start aqctl_thermostat and thermostat_sim as subprocesses
          # and look up the installed entry points, so run them against $out.
          checkPhase = ''
            runHook preCheck
            export PATH=$out/bin:$PATH
            export PYTHONPATH=$out/${python.sitePackages}:$PYTHONPATH
            python -m pytest -p no:cacheprovider tests
            runHook postCheck
          '';
          pythonImportsCheck = [ "thermostat_ctrl" "thermostat_ctrl.aqctl_thermostat" ];
        };
        app = name: {
          type = "app";
          program = "${thermostat_ctrl}/bin/${name}";
        };
      in {
        packages = {
          inherit thermostat_ctrl;
          default = thermostat_ctrl;
        };

        apps = {
          aqctl_thermostat = app "aqctl_thermostat";
          thermostat_bridge = app "thermostat_bridge";
          thermostat_sim = app "thermostat_sim";
          thermostat_ctrl = app "thermostat_ctrl";
          default = app "aqctl_thermostat";
        };

        devShells.default = pkgs.mkShell {
          name = "thermostat_ctrl-dev-shell";
          buildInputs = [
            (python.withPackages (ps: deps ps ++ testDeps ps ++ [ ps.setuptools ps.pip ]))
          ];
        };
      });
}
