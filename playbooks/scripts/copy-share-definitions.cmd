@echo off
rem ===========================================================================
rem Recreates old-sbs's data shares on new-sbs with their exact share
rem permissions, the registry way of KB 125996: each share is one value under
rem LanmanServer\Shares (path, type, remark...) and its permissions are one
rem value under LanmanServer\Shares\Security. The paths are identical on both
rem servers (the var data_root), so the values are copied as they are.
rem The shares appear when new-sbs restarts (step restart-new-for-shares).
rem
rem A share that already exists on new-sbs with the same definition is left
rem alone (safe to run again); one with a different definition stops the
rem step: resolve it by hand rather than overwrite it.
rem Runs in the Runner-Migration task: reading old-sbs's registry needs its
rem credentials. "undo" (the step's rollback, run directly) removes the shares.
rem The shares and old-sbs's name come from C:\mig\bin\customer.cmd (the step
rem customer-settings).
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set SHARES=%MIG_SHARES%
set OLD=%MIG_OLD%
set KEY=HKLM\SYSTEM\CurrentControlSet\Services\LanmanServer\Shares
if /i "%~1"=="in-task" goto work
if /i "%~1"=="undo" goto undo
call C:\mig\bin\job.cmd copy-share-definitions "%~f0" in-task
exit /b %errorlevel%

:work
set FAILED=0
for %%S in (%SHARES%) do call :copy_one %%S || set FAILED=1
if not "%FAILED%"=="0" exit /b 1
echo Share definitions copied: they take effect when new-sbs restarts.
exit /b 0

:copy_one
rem reg query prints "NAME<tab>TYPE<tab>DATA": token 2 is the type, the rest the data.
rem Delayed expansion (!VAR!) keeps a remark such as "R&D (2004)" from being
rem read as cmd syntax.
setlocal EnableDelayedExpansion
set "NAME=%~1"
set "DATA="
set "SD="
set "CUR="
for /f "tokens=2*" %%a in ('reg query "\\%OLD%\%KEY%" /v %~1 ^| findstr /i "REG_MULTI_SZ"') do set "DATA=%%b"
for /f "tokens=2*" %%a in ('reg query "\\%OLD%\%KEY%\Security" /v %~1 ^| findstr /i "REG_BINARY"') do set "SD=%%b"
for /f "tokens=2*" %%a in ('reg query "%KEY%" /v %~1 2^>nul ^| findstr /i "REG_MULTI_SZ"') do set "CUR=%%b"
if not defined DATA (
    echo !NAME!: no such share on old-sbs. 1>&2
    exit /b 1
)
if defined CUR (
    if "!CUR!"=="!DATA!" (
        echo !NAME!: already defined identically on new-sbs.
        exit /b 0
    )
    echo !NAME!: new-sbs already has a different share of this name. 1>&2
    echo   new-sbs: !CUR! 1>&2
    echo   old-sbs: !DATA! 1>&2
    exit /b 1
)
echo !NAME!: !DATA!
reg add "%KEY%" /v !NAME! /t REG_MULTI_SZ /d "!DATA!" /f
if errorlevel 1 exit /b 1
if defined SD (
    reg add "%KEY%\Security" /v !NAME! /t REG_BINARY /d !SD! /f
    if errorlevel 1 exit /b 1
)
exit /b 0

:undo
for %%S in (%SHARES%) do (
    net share %%S /delete /y >nul 2>&1
    reg delete "%KEY%\Security" /v %%S /f >nul 2>&1
    reg delete "%KEY%" /v %%S /f >nul 2>&1
)
set LEFT=0
for %%S in (%SHARES%) do (
    reg query "%KEY%" /v %%S >nul 2>&1
    if not errorlevel 1 set LEFT=1
)
exit /b %LEFT%
