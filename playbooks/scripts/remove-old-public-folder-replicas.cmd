@echo off
rem ===========================================================================
rem Removes old-sbs's replicas of the public folders, now that new-sbs holds
rem a complete copy (checked by the operator in verify-public-folders):
rem Exchange 2000 may only be removed from old-sbs once it holds no replica
rem (KB 307917; KB 822931). pfmigrate.wsf /D removes a replica from the
rem source only where the target has one.
rem Runs in the Runner-Migration task: pfmigrate talks to both servers,
rem whose names come from C:\mig\bin\customer.cmd (the step customer-settings).
rem "undo" (the step's rollback) adds old-sbs's replicas back.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set PFM=C:\mig\exdeploy\pfmigrate.wsf
if /i "%~1"=="in-task" goto work
if /i "%~1"=="undo" goto undo
call C:\mig\bin\job.cmd remove-old-public-folder-replicas "%~f0" in-task
exit /b %errorlevel%

:work
if not exist "%PFM%" goto missing
cscript //nologo "%PFM%" /S:%MIG_OLD% /T:%MIG_NEW% /D
if errorlevel 1 exit /b 1
cscript //nologo "%PFM%" /S:%MIG_OLD% /T:%MIG_NEW% /D /SF
if errorlevel 1 exit /b 1
cscript //nologo "%PFM%" /S:%MIG_OLD% /T:%MIG_NEW% /R
exit /b %errorlevel%

:undo
if not exist "%PFM%" goto missing
cscript //nologo "%PFM%" /S:%MIG_NEW% /T:%MIG_OLD% /A /SF /N:1000
if errorlevel 1 exit /b 1
cscript //nologo "%PFM%" /S:%MIG_NEW% /T:%MIG_OLD% /A /N:1000
exit /b %errorlevel%

:missing
echo %PFM% is missing: copy the Exchange 2003 Deployment Tools to C:\mig\exdeploy. 1>&2
exit /b 1
